import CBLAS
import Foundation
import Inference
import Placement
import Synchronization

/// Measures this machine's `DeviceProfile` in well under a few seconds, and caches it on disk.
///
/// Measuring sets OpenBLAS's thread count for the duration of the sgemm probe and restores it after;
/// do not run it while the same process runs other BLAS work.
public enum DeviceProfiler {
    /// How a profile was obtained.
    public enum Source: String, Sendable, Codable {
        /// Measured just now.
        case measured
        /// Read from a cache file younger than the allowed age, taken on this host.
        case cached
        /// Every field declared in the worker's config; nothing measured.
        case declared
    }

    /// A profile and how it was obtained.
    public struct Result: Sendable {
        /// The profile placement should see: measured or cached, with the declaration applied.
        public let profile: DeviceProfile
        public let source: Source
        /// Seconds spent measuring (0 when cached or declared).
        public let measurementSeconds: Double
    }

    /// Measures sgemm throughput, memory read bandwidth, memory, cores, RDMA devices and host id, and records the
    /// kernel level (`Kernels.selection`).
    /// - Parameters:
    ///   - threads: threads for the sgemm and bandwidth probes (≥ 1); use the worker's compute threads.
    ///   - name: worker name; defaults to the host name.
    public static func measure(threads: Int, name: String? = nil) throws(WorkerError) -> DeviceProfile {
        guard threads >= 1 else { throw WorkerError(.invalidArgument, "threads must be at least 1, got \(threads)") }
        let memory = try memoryInfo()
        return DeviceProfile(
            name: name ?? ProcessInfo.processInfo.hostName,
            sgemmGFLOPS: sgemmGFLOPS(threads: threads),
            memoryReadGBps: memoryReadGBps(threads: threads),
            memoryTotalBytes: memory.total,
            memoryFreeBytes: memory.available,
            cores: ProcessInfo.processInfo.activeProcessorCount,
            isa: Kernels.selection.isa,
            transports: .init(rdmaDevices: rdmaDevices(), sharedMemoryHostID: hostID())
        )
    }

    /// The profile a worker should register with: the cache when it is younger than `maxAge` and was taken
    /// on this host with the same thread count, otherwise a fresh measurement (written to the cache).
    /// The declaration is applied last, so editing it never needs the cache to be invalidated; when it
    /// declares every measured field nothing is measured. Free memory is always re-read, since it changes.
    /// - Parameters:
    ///   - cachePath: JSON cache file; nil disables caching. Its folder is created if missing.
    ///   - maxAge: seconds a cached measurement stays valid.
    public static func profile(name: String, threads: Int, declared: DeclaredProfile = DeclaredProfile(),
                               labels: [String: String] = [:], cachePath: String?, maxAge: TimeInterval = 86_400,
                               now: Date = Date()) throws(WorkerError) -> Result {
        var declared = declared
        declared.labels.merge(labels) { declared, _ in declared }
        let host = hostID()
        if declared.isComplete {
            let base = DeviceProfile(name: name, sgemmGFLOPS: 0, memoryReadGBps: 0, memoryTotalBytes: 0,
                                     memoryFreeBytes: 0, cores: 1)
            return Result(profile: base.applying(declared), source: .declared, measurementSeconds: 0)
        }
        if let cachePath, let cached = readCache(path: cachePath), cached.hostID == host, cached.threads == threads,
           now.timeIntervalSince(cached.measuredAt) < maxAge, cached.measuredAt <= now.addingTimeInterval(60) {
            var profile = cached.profile
            profile.name = name
            if let memory = try? memoryInfo() { profile.memoryFreeBytes = memory.available }
            // BATON_ISA may differ from the run that filled the cache; the level costs nothing to read.
            profile.isa = Kernels.selection.isa
            return Result(profile: profile.applying(declared), source: .cached, measurementSeconds: 0)
        }
        let start = ContinuousClock.now
        var measured = try measure(threads: threads, name: name)
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        measured.name = name
        if let cachePath {
            try writeCache(CacheFile(hostID: host, threads: threads, measuredAt: now, measurementSeconds: seconds,
                                     profile: measured), path: cachePath)
        }
        return Result(profile: measured.applying(declared), source: .measured, measurementSeconds: seconds)
    }

    /// `profile(name:threads:…)` with everything taken from a worker's config; `threads` defaults to all cores.
    public static func profile(for config: WorkerConfig, now: Date = Date()) throws(WorkerError) -> Result {
        try profile(name: config.name, threads: config.threads ?? ProcessInfo.processInfo.activeProcessorCount,
                    declared: config.declaredProfile, cachePath: config.profileCachePath,
                    maxAge: config.profileCacheMaxAge, now: now)
    }

    // MARK: Probes

    /// Best-of-N `cblas_sgemm` throughput for C[512×1536] = A[512×576]·B[576×1536], in GFLOP/s.
    /// Runs for about a quarter of a second.
    public static func sgemmGFLOPS(threads: Int) -> Double {
        let m = 512, n = 1536, k = 576
        let a = (0..<(m * k)).map { Float($0 % 7) * 0.01 }
        let b = (0..<(k * n)).map { Float($0 % 5) * 0.01 }
        var c = [Float](repeating: 0, count: m * n)
        let previous = openblas_get_num_threads()
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(previous) }

        func run() {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        }
        run()  // warm-up: thread pool start, page faults on C
        let clock = ContinuousClock()
        let budget = clock.now.advanced(by: .milliseconds(250))
        var best = Duration.seconds(1_000)
        var runs = 0
        while runs < 3 || (runs < 50 && clock.now < budget) {
            let elapsed = clock.measure { run() }
            best = min(best, elapsed)
            runs += 1
        }
        return 2 * Double(m) * Double(n) * Double(k) / (best / .seconds(1)) / 1e9
    }

    /// Best-of-3 read bandwidth over a `bytes`-sized buffer (default 256 MiB, far larger than any L3),
    /// summed with 64-byte SIMD loads split across `threads`, in GB/s (10⁹ bytes per second).
    public static func memoryReadGBps(threads: Int, bytes: Int = 256 << 20) -> Double {
        let vectorBytes = MemoryLayout<SIMD16<Float>>.stride
        let count = max(threads * 4, bytes / vectorBytes)
        // `repeating:` writes every page, so page faults happen here and not in the timed passes.
        let buffer = [SIMD16<Float>](repeating: SIMD16(repeating: 1), count: count)
        let sums = Mutex<Float>(0)
        let clock = ContinuousClock()
        var best = Duration.seconds(1_000)
        for _ in 0..<3 {
            let elapsed = clock.measure {
                DispatchQueue.concurrentPerform(iterations: threads) { part in
                    let start = count * part / threads, end = count * (part + 1) / threads
                    let sum = sumVectors(buffer, from: start, to: end)
                    sums.withLock { $0 += sum }
                }
            }
            best = min(best, elapsed)
        }
        // Using the sum keeps the loads alive; every element is 16 ones, summed 3 times.
        let expected = Float(count) * 16 * 3
        let total = sums.withLock { $0 }
        guard abs(total - expected) <= expected * 0.01 else { return 0 }
        return Double(count * vectorBytes) / (best / .seconds(1)) / 1e9
    }

    private static func sumVectors(_ buffer: [SIMD16<Float>], from start: Int, to end: Int) -> Float {
        // Four independent accumulators so the adds do not serialize on one register.
        var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
        var i = start
        while i + 4 <= end {
            s0 += buffer[i]
            s1 += buffer[i + 1]
            s2 += buffer[i + 2]
            s3 += buffer[i + 3]
            i += 4
        }
        while i < end {
            s0 += buffer[i]
            i += 1
        }
        return ((s0 + s1) + (s2 + s3)).sum()
    }

    /// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
    public static func memoryInfo(path: String = "/proc/meminfo") throws(WorkerError) -> (total: Int, available: Int) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw WorkerError(.profiling, "cannot read \(path): \(error.localizedDescription)")
        }
        guard let parsed = parseMemInfo(text) else {
            throw WorkerError(.profiling, "\(path) has no MemTotal/MemAvailable lines")
        }
        return parsed
    }

    /// Parses `/proc/meminfo` text (values in kB); nil when either line is missing.
    static func parseMemInfo(_ text: String) -> (total: Int, available: Int)? {
        var total: Int?, available: Int?
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == ":" })
            guard fields.count >= 2, let kilobytes = Int(fields[1]) else { continue }
            if fields[0] == "MemTotal" { total = kilobytes * 1024 }
            if fields[0] == "MemAvailable" { available = kilobytes * 1024 }
        }
        guard let total, let available else { return nil }
        return (total, available)
    }

    /// `/etc/machine-id` when present, else the host name: equal on two workers ⇔ same physical host.
    public static func hostID() -> String {
        if let id = try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty {
            return id
        }
        return ProcessInfo.processInfo.hostName
    }

    /// RDMA device names under `/sys/class/infiniband` (none on machines without RDMA hardware).
    public static func rdmaDevices(root: String = "/sys/class/infiniband") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
    }

    // MARK: Cache

    struct CacheFile: Codable {
        var hostID: String
        var threads: Int
        var measuredAt: Date
        var measurementSeconds: Double
        var profile: DeviceProfile

        enum CodingKeys: String, CodingKey {
            case hostID = "host_id", threads, measuredAt = "measured_at",
                 measurementSeconds = "measurement_seconds", profile
        }
    }

    private static func readCache(path: String) -> CacheFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        // An unreadable cache is only a cache: measure again.
        return try? decoder.decode(CacheFile.self, from: data)
    }

    private static func writeCache(_ cache: CacheFile, path: String) throws(WorkerError) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            let folder = (path as NSString).deletingLastPathComponent
            if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try encoder.encode(cache).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw WorkerError(.profiling, "cannot write profile cache \(path): \(error.localizedDescription)")
        }
    }
}
