import NIOSSL

extension KVTransportTLS {
    /// Server side of mutual TLS: presents this node's chain and requires a client certificate that
    /// chains to the cluster CA. Host names are not checked (nodes are identified by the CA, not DNS).
    func makeServerContext() throws(KVTransportError) -> NIOSSLContext {
        let (chain, key, authority) = try parsed()
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.trustRoots = .certificates(authority)
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv13
        configuration.applicationProtocols = ["h2"]
        return try context(configuration)
    }

    /// Client side of mutual TLS: presents this node's chain and requires the server's to chain to the
    /// cluster CA.
    func makeClientContext() throws(KVTransportError) -> NIOSSLContext {
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

    private func parsed() throws(KVTransportError) -> ([NIOSSLCertificate], NIOSSLPrivateKey, [NIOSSLCertificate]) {
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8))
            let authority = try NIOSSLCertificate.fromPEMBytes(Array(certificateAuthorityPEM.utf8))
            let key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
            guard !chain.isEmpty, !authority.isEmpty else {
                throw KVTransportError(.certificate, "the node certificate chain or the cluster CA holds no certificate")
            }
            return (chain, key, authority)
        } catch let error as KVTransportError {
            throw error
        } catch {
            throw KVTransportError(.certificate, "could not read the node's TLS certificates", cause: error)
        }
    }

    private func context(_ configuration: TLSConfiguration) throws(KVTransportError) -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: configuration) } catch {
            throw KVTransportError(.certificate, "could not set up TLS", cause: error)
        }
    }
}
