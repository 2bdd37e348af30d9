/// The ranges a device profile must fall in to be believed. A registration is the one place a remote party
/// feeds numbers into placement's ranking: a profile claiming 10³⁰ GFLOP/s would win every placement, and one
/// with megabytes of labels would be written to the membership log on every registration.
extension DeviceProfile {
    /// The bounds `validated()` checks, with headroom over today's largest machines (an H200 streams ~4.8 TB/s
    /// and multiplies fp32 at ~67 TFLOP/s; servers hold a few TiB).
    public enum Limits {
        public static let sgemmGFLOPS: ClosedRange<Double> = 0.001...1_000_000
        public static let memoryReadGBps: ClosedRange<Double> = 0.001...100_000
        /// 1 MiB ... 1 PiB.
        public static let memoryTotalBytes: ClosedRange<Int> = (1 << 20)...(1 << 50)
        public static let cores: ClosedRange<Int> = 1...65_536
        public static let labelCount = 32
        public static let labelKeyBytes = 63
        public static let labelValueBytes = 256
        public static let rdmaDevices = 16
        /// RDMA device names and the shared-memory host id.
        public static let identifierBytes = 128
    }

    /// This profile, or `.invalidArgument` naming the first figure outside `Limits` and the range it must be in.
    public func validated() throws(PlacementError) -> DeviceProfile {
        func refuse(_ message: String) -> PlacementError {
            PlacementError(.invalidArgument, "worker \(name)'s profile: \(message)")
        }
        guard sgemmGFLOPS.isFinite, Limits.sgemmGFLOPS.contains(sgemmGFLOPS) else {
            throw refuse("sgemm_gflops \(sgemmGFLOPS) is outside \(Limits.sgemmGFLOPS)")
        }
        guard memoryReadGBps.isFinite, Limits.memoryReadGBps.contains(memoryReadGBps) else {
            throw refuse("memory_read_gbps \(memoryReadGBps) is outside \(Limits.memoryReadGBps)")
        }
        guard Limits.memoryTotalBytes.contains(memoryTotalBytes) else {
            throw refuse("memory_total_bytes \(memoryTotalBytes) is outside \(Limits.memoryTotalBytes)")
        }
        guard (0...memoryTotalBytes).contains(memoryFreeBytes) else {
            throw refuse("memory_free_bytes \(memoryFreeBytes) is outside 0...memory_total_bytes (\(memoryTotalBytes))")
        }
        guard Limits.cores.contains(cores) else { throw refuse("cores \(cores) is outside \(Limits.cores)") }
        guard labels.count <= Limits.labelCount else {
            throw refuse("\(labels.count) labels, at most \(Limits.labelCount) allowed")
        }
        for (key, value) in labels {
            guard (1...Limits.labelKeyBytes).contains(key.utf8.count) else {
                throw refuse("label key of \(key.utf8.count) bytes, 1...\(Limits.labelKeyBytes) allowed")
            }
            guard value.utf8.count <= Limits.labelValueBytes else {
                throw refuse("label \(key) has a \(value.utf8.count)-byte value, at most \(Limits.labelValueBytes) allowed")
            }
        }
        guard transports.rdmaDevices.count <= Limits.rdmaDevices,
            transports.rdmaDevices.allSatisfy({ $0.utf8.count <= Limits.identifierBytes }),
            (transports.sharedMemoryHostID?.utf8.count ?? 0) <= Limits.identifierBytes
        else {
            throw refuse("transports: at most \(Limits.rdmaDevices) RDMA devices, names and the host id at most \(Limits.identifierBytes) bytes")
        }
        return self
    }
}
