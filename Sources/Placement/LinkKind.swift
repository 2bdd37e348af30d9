/// How KV gets from a prefill worker to a decode worker, best first.
public enum LinkKind: String, Sendable, Equatable, Codable, CaseIterable {
    /// The same worker does both halves: no hand-off.
    case local
    /// Same host (equal shared-memory host ids).
    case sharedMemory = "shared_memory"
    /// Both have RDMA devices.
    case rdma
    /// TLS over TCP: always possible.
    case tcp

    /// The best link two workers both support.
    public static func between(_ a: DeviceProfile, _ b: DeviceProfile) -> LinkKind {
        if a.name == b.name { return .local }
        if let host = a.transports.sharedMemoryHostID, host == b.transports.sharedMemoryHostID { return .sharedMemory }
        if !a.transports.rdmaDevices.isEmpty, !b.transports.rdmaDevices.isEmpty { return .rdma }
        return .tcp
    }
}
