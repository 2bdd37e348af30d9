import Foundation

/// Profile fields declared in a worker's config. Every field is optional; a set field overrides the
/// measured one. That is how heterogeneous boxes are simulated on one machine.
public struct DeclaredProfile: Sendable, Equatable {
    public var name: String?
    public var sgemmGFLOPS: Double?
    public var memoryReadGBps: Double?
    public var memoryTotalBytes: Int?
    public var memoryFreeBytes: Int?
    public var cores: Int?
    public var rdmaDevices: [String]?
    public var sharedMemoryHostID: String?
    public var labels: [String: String]

    public init(name: String? = nil, sgemmGFLOPS: Double? = nil, memoryReadGBps: Double? = nil,
                memoryTotalBytes: Int? = nil, memoryFreeBytes: Int? = nil, cores: Int? = nil,
                rdmaDevices: [String]? = nil, sharedMemoryHostID: String? = nil, labels: [String: String] = [:]) {
        self.name = name
        self.sgemmGFLOPS = sgemmGFLOPS
        self.memoryReadGBps = memoryReadGBps
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryFreeBytes = memoryFreeBytes
        self.cores = cores
        self.rdmaDevices = rdmaDevices
        self.sharedMemoryHostID = sharedMemoryHostID
        self.labels = labels
    }

    /// True when every measured field is declared, so measuring can be skipped.
    public var isComplete: Bool {
        sgemmGFLOPS != nil && memoryReadGBps != nil && memoryTotalBytes != nil && memoryFreeBytes != nil
            && cores != nil && rdmaDevices != nil && sharedMemoryHostID != nil
    }

    /// Keys of a worker config's `profile:` mapping.
    static let keys = ["sgemm_gflops", "memory_read_gbps", "memory_total", "memory_free", "cores",
                       "rdma_devices", "host_id"]

    /// Parses a `profile:` mapping (see `Deploy/config/workers/*.yaml`).
    public init(node: ConfigNode) throws(PlacementError) {
        let map = try node.mapping(allowed: Self.keys)
        self.init()
        if let v = map["sgemm_gflops"], !v.isNull { sgemmGFLOPS = try v.double(in: 0...1e9) }
        if let v = map["memory_read_gbps"], !v.isNull { memoryReadGBps = try v.double(in: 0...1e6) }
        if let v = map["memory_total"], !v.isNull { memoryTotalBytes = try v.bytes() }
        if let v = map["memory_free"], !v.isNull { memoryFreeBytes = try v.bytes() }
        if let v = map["cores"], !v.isNull { cores = try v.int(in: 1...1_000_000) }
        if let v = map["rdma_devices"], !v.isNull { rdmaDevices = try v.stringList() }
        if let v = map["host_id"], !v.isNull { sharedMemoryHostID = try v.string() }
        if let total = memoryTotalBytes, let free = memoryFreeBytes, free > total, let v = map["memory_free"] {
            throw v.error("memory_free (\(ByteCount.format(free))) exceeds memory_total (\(ByteCount.format(total)))")
        }
    }
}
