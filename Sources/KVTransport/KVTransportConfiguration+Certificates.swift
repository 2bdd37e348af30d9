import RPC

extension KVTransportConfiguration {
    /// A transport configuration for a node named `node` acting as `role` (`.prefill` sends, `.decode` receives)
    /// with a certificate issued now by `authority`, over the TLS stream only (no shared memory or RDMA): for
    /// benchmarks and tests that make their own CA.
    public static func tlsStreamConfiguration(
        node: String, role: NodeRole, authority: ClusterCertificates.Issued, idleTimeout: Duration
    ) throws(RPCError) -> KVTransportConfiguration {
        let issued = try ClusterCertificates.issueNode(node, roles: [role], authority: authority)
        var configuration = KVTransportConfiguration(
            tls: ClusterCertificates.tls(node: issued, authorityPEM: authority.certificatePEM),
            policy: KVTransportPolicy(allowRDMA: false, allowSharedMemory: false))
        configuration.idleTimeout = idleTimeout
        return configuration
    }

}
