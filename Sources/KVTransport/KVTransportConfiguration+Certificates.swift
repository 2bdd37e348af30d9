import RPC

extension KVTransportConfiguration {
    /// A transport configuration for a node named `node` with a certificate issued now by `authority`, over the
    /// TLS stream only (no shared memory or RDMA): for benchmarks and tests that make their own CA.
    public static func tlsStreamConfiguration(
        node: String, authority: ClusterCertificates.Issued, idleTimeout: Duration
    ) throws(RPCError) -> KVTransportConfiguration {
        var configuration = KVTransportConfiguration(
            tls: ClusterCertificates.tls(node: try ClusterCertificates.issueNode(node, authority: authority), authorityPEM: authority.certificatePEM),
            policy: KVTransportPolicy(allowRDMA: false, allowSharedMemory: false))
        configuration.idleTimeout = idleTimeout
        return configuration
    }

}
