import ClusterProtocol

/// How a transfer's KV bytes travel.
public enum KVTransportKind: Sendable, Equatable, CaseIterable {
    case rdma
    case sharedMemory
    case tlsHTTP2
    case plaintextHTTP2

    /// The transport's one name (`tls-h2`, `plaintext-h2`, `shared-memory`, `rdma`), as metrics, cluster
    /// status, logs and docs spell it.
    public var name: String { proto.name }
}

/// What one end can do, exchanged at the handshake.
public struct KVTransportCapabilities: Sendable, Equatable {
    /// Identifies the machine; equal non-empty ids on both ends mean shared memory is possible.
    public var hostID: String
    public var sharedMemory: Bool
    public var rdma: Bool

    public init(hostID: String, sharedMemory: Bool, rdma: Bool) {
        self.hostID = hostID
        self.sharedMemory = sharedMemory
        self.rdma = rdma
    }
}

/// What the operator allows.
public struct KVTransportPolicy: Sendable, Equatable {
    public var allowRDMA: Bool
    public var allowSharedMemory: Bool
    /// Permit unencrypted, unauthenticated HTTP/2. Off by default; turning it on is logged loudly.
    public var insecure: Bool

    public init(allowRDMA: Bool = true, allowSharedMemory: Bool = true, insecure: Bool = false) {
        self.allowRDMA = allowRDMA
        self.allowSharedMemory = allowSharedMemory
        self.insecure = insecure
    }
}

public enum KVTransportSelection {
    /// Picks the data path for one transfer: shared memory when both ends are on one host, else RDMA when
    /// both have a device, else HTTP/2 over mutual TLS; plaintext HTTP/2 only when the policy is
    /// `insecure` and the control connection itself is plaintext. Throws `.refused` when nothing is allowed
    /// (a plaintext connection without `insecure`).
    public static func select(
        local: KVTransportCapabilities, remote: KVTransportCapabilities, policy: KVTransportPolicy,
        connectionIsTLS: Bool
    ) throws(KVTransportError) -> KVTransportKind {
        if !connectionIsTLS && !policy.insecure {
            throw KVTransportError(.refused, "plaintext connection refused: the KV plane requires mutual TLS unless `insecure` is set")
        }
        if policy.allowSharedMemory, local.sharedMemory, remote.sharedMemory, !local.hostID.isEmpty,
            local.hostID == remote.hostID
        {
            return .sharedMemory
        }
        if policy.allowRDMA, local.rdma, remote.rdma { return .rdma }
        return connectionIsTLS ? .tlsHTTP2 : .plaintextHTTP2
    }
}
