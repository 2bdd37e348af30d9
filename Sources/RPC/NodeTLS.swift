import NIOSSL

/// The certificates one node presents to its peers (RPC and KV plane alike): its chain and key, and the cluster CA that every
/// peer's certificate must chain to (PEM text, as `ClusterCertificates` writes them).
public struct NodeTLS: Sendable, Equatable {
    public var certificateAuthorityPEM: String
    public var certificateChainPEM: String
    public var privateKeyPEM: String

    public init(certificateAuthorityPEM: String, certificateChainPEM: String, privateKeyPEM: String) {
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
    }
}


extension NodeTLS {
    /// The name and roles this node's own certificate carries.
    public func identity() throws(RPCError) -> NodeIdentity {
        try NodeIdentity(pem: certificateChainPEM)
    }

    /// Server side of mutual TLS: presents this node's chain and requires a client certificate that
    /// chains to the cluster CA. Host names are not checked (nodes are identified by the CA, not DNS).
    /// With `requireClientCertificate` false a client may present none (a node joining the cluster); one it
    /// presents must still chain to the CA.
    public func makeServerContext(requireClientCertificate: Bool = true) throws(RPCError) -> NIOSSLContext {
        let (chain, key, authority) = try parsed()
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.trustRoots = .certificates(authority)
        configuration.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
        configuration.minimumTLSVersion = .tlsv13
        configuration.applicationProtocols = ["h2"]
        return try context(configuration)
    }

    /// Client side of mutual TLS: presents this node's chain and requires the server's to chain to the
    /// cluster CA.
    public func makeClientContext() throws(RPCError) -> NIOSSLContext {
        let (chain, key, authority) = try parsed()
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(key)
        configuration.trustRoots = .certificates(authority)
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv13
        configuration.applicationProtocols = ["h2"]
        return try context(configuration)
    }

    private func parsed() throws(RPCError) -> ([NIOSSLCertificate], NIOSSLPrivateKey, [NIOSSLCertificate]) {
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8))
            let authority = try NIOSSLCertificate.fromPEMBytes(Array(certificateAuthorityPEM.utf8))
            let key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
            guard !chain.isEmpty, !authority.isEmpty else {
                throw RPCError(.certificate, "the node certificate chain or the cluster CA holds no certificate")
            }
            return (chain, key, authority)
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(.certificate, "could not read the node's TLS certificates", cause: error)
        }
    }

    private func context(_ configuration: TLSConfiguration) throws(RPCError) -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: configuration) } catch {
            throw RPCError(.certificate, "could not set up TLS", cause: error)
        }
    }
}
