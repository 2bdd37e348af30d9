import Foundation

/// What one worker's box can do, as placement sees it: compute and memory bandwidth, memory, cores,
/// the transports it can use to hand KV over, and free-form labels. Measured by `DeviceProfiler`, or
/// declared in a worker's config (`DeclaredProfile`), which overrides measured fields field by field.
///
/// JSON form (membership log, profile cache, `explain --json`) uses snake_case keys.
public struct DeviceProfile: Codable, Sendable, Equatable {
    /// Worker name, unique in the cluster; the membership log's identity for the worker.
    public var name: String
    /// Single-precision GEMM throughput (`cblas_sgemm` 512×1536×576), in GFLOP/s: stands for prefill speed.
    public var sgemmGFLOPS: Double
    /// Streaming memory read bandwidth in GB/s (10⁹ bytes/s): stands for decode speed.
    public var memoryReadGBps: Double
    /// Physical memory, bytes.
    public var memoryTotalBytes: Int
    /// Memory available to new allocations (`MemAvailable`), bytes, when measured.
    public var memoryFreeBytes: Int
    /// Cores the worker may use.
    public var cores: Int
    /// The kernel level the worker's engines run, as `BATON_ISA` spells it ("avx512", "avx2", "neon-dotprod",
    /// "neon", "scalar"); nil in profiles from before it was recorded, and in fully declared ones.
    public var isa: String?
    /// How this box can exchange KV with others.
    public var transports: Transports
    /// Free-form labels a policy can select on, for example `box: compute` or `zone: a`.
    public var labels: [String: String]

    /// KV hand-off transports a box has. TCP (TLS over HTTP/2) is always available.
    public struct Transports: Codable, Sendable, Equatable {
        /// RDMA device names (`/sys/class/infiniband`); empty when the box has none.
        public var rdmaDevices: [String]
        /// Identifies the physical host: two workers with the same id can hand KV over through shared memory.
        public var sharedMemoryHostID: String?

        public init(rdmaDevices: [String] = [], sharedMemoryHostID: String? = nil) {
            self.rdmaDevices = rdmaDevices
            self.sharedMemoryHostID = sharedMemoryHostID
        }

        enum CodingKeys: String, CodingKey {
            case rdmaDevices = "rdma_devices", sharedMemoryHostID = "shared_memory_host_id"
        }
    }

    public init(name: String, sgemmGFLOPS: Double, memoryReadGBps: Double, memoryTotalBytes: Int,
                memoryFreeBytes: Int, cores: Int, isa: String? = nil, transports: Transports = Transports(),
                labels: [String: String] = [:]) {
        self.name = name
        self.sgemmGFLOPS = sgemmGFLOPS
        self.memoryReadGBps = memoryReadGBps
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryFreeBytes = memoryFreeBytes
        self.cores = cores
        self.isa = isa
        self.transports = transports
        self.labels = labels
    }

    enum CodingKeys: String, CodingKey {
        case name, sgemmGFLOPS = "sgemm_gflops", memoryReadGBps = "memory_read_gbps"
        case memoryTotalBytes = "memory_total_bytes", memoryFreeBytes = "memory_free_bytes", cores, isa, transports, labels
    }

    /// What the box is, in one line, as `cluster status` and `placement explain` show it:
    /// "avx2, 2 cores, 105 GFLOP/s, 12.3 GB/s".
    public var summary: String {
        "\(isa ?? "isa unknown"), \(cores) core\(cores == 1 ? "" : "s"), \(Self.figure(sgemmGFLOPS)) GFLOP/s, "
            + "\(Self.figure(memoryReadGBps)) GB/s"
    }

    /// Whole numbers from 100 up, one decimal below.
    public static func figure(_ value: Double) -> String {
        value >= 100 || value == value.rounded() ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }

    /// This profile with every field the declaration sets replaced; labels are merged (declared wins).
    public func applying(_ declared: DeclaredProfile) -> DeviceProfile {
        var result = self
        if let value = declared.name { result.name = value }
        if let value = declared.sgemmGFLOPS { result.sgemmGFLOPS = value }
        if let value = declared.memoryReadGBps { result.memoryReadGBps = value }
        if let value = declared.memoryTotalBytes { result.memoryTotalBytes = value }
        if let value = declared.memoryFreeBytes { result.memoryFreeBytes = value }
        if let value = declared.cores { result.cores = value }
        if let value = declared.rdmaDevices { result.transports.rdmaDevices = value }
        if let value = declared.sharedMemoryHostID { result.transports.sharedMemoryHostID = value }
        result.labels.merge(declared.labels) { _, declared in declared }
        return result
    }
}
