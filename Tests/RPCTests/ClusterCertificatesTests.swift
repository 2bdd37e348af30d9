import RPC
import Testing

@Suite("Cluster certificates")
struct ClusterCertificatesTests {
    @Test("A CA and a node certificate come out as PEM")
    func pem() throws {
        let authority = try ClusterCertificates.makeAuthority()
        let node = try ClusterCertificates.issueNode("decode-1", authority: authority)
        #expect(authority.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(node.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(node.certificatePEM != authority.certificatePEM)
    }

    @Test("Issuing with a broken CA key is a certificate error")
    func brokenAuthority() throws {
        var authority = try ClusterCertificates.makeAuthority()
        authority.privateKeyPEM = "not a key"
        let error = #expect(throws: RPCError.self) { try ClusterCertificates.issueNode("x", authority: authority) }
        #expect(error?.code == .certificate)
    }
}
