import RPC
import Testing
import X509

@Suite("Cluster certificates")
struct ClusterCertificatesTests {
    @Test("A CA and a node certificate come out as PEM")
    func pem() throws {
        let authority = try ClusterCertificates.makeAuthority()
        let node = try ClusterCertificates.issueNode("decode-1", roles: [.decode], authority: authority)
        #expect(authority.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(node.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(node.certificatePEM != authority.certificatePEM)
    }

    @Test("Issuing with a broken CA key is a certificate error")
    func brokenAuthority() throws {
        var authority = try ClusterCertificates.makeAuthority()
        authority.privateKeyPEM = "not a key"
        let error = #expect(throws: RPCError.self) { try ClusterCertificates.issueNode("x", roles: [.router], authority: authority) }
        #expect(error?.code == .certificate)
    }

    @Test("A node certificate binds the name and roles in its subject alternative names, and reads back the same")
    func identityRoundTrip() throws {
        let authority = try ClusterCertificates.makeAuthority()
        let node = try ClusterCertificates.issueNode("both-1", roles: [.prefill, .decode], authority: authority)
        #expect(try NodeIdentity(pem: node.certificatePEM) == NodeIdentity(name: "both-1", roles: [.prefill, .decode]))
        let names = try Certificate(pemEncoded: node.certificatePEM).extensions.subjectAlternativeNames
        #expect(names == SubjectAlternativeNames([
            .dnsName("both-1"), .uniformResourceIdentifier("urn:baton:node:both-1"),
            .uniformResourceIdentifier("urn:baton:role:decode"), .uniformResourceIdentifier("urn:baton:role:prefill"),
        ]))
    }

    @Test("A certificate without a Baton node name carries no identity, and the error says how to get one")
    func noIdentity() throws {
        let authority = try ClusterCertificates.makeAuthority()
        let error = #expect(throws: RPCError.self) { try NodeIdentity(pem: authority.certificatePEM) }
        #expect(error?.code == .certificate)
        #expect(error?.message.contains("baton certs --nodes NAME:ROLES") == true)
    }

    @Test("A node certificate needs a name and a role")
    func needsRoles() throws {
        let authority = try ClusterCertificates.makeAuthority()
        #expect(throws: RPCError.self) { try ClusterCertificates.issueNode("x", roles: [], authority: authority) }
        #expect(throws: RPCError.self) { try ClusterCertificates.issueNode("", roles: [.router], authority: authority) }
    }

    @Test("Role lists parse with '+' and name the unknown role")
    func roleLists() throws {
        #expect(try NodeRole.parseList("decode+prefill") == [.decode, .prefill])
        let error = #expect(throws: RPCError.self) { try NodeRole.parseList("decode+admin") }
        #expect(error?.message == #"unknown role "admin" (roles: placement, router, prefill, decode)"#)
    }
}
