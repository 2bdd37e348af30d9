import Foundation
import Placement

/// The workers `baton simulate` runs: device profiles with roles, links and KV capacity. Read from a cluster file
/// (the example is `Deploy/config/simulate/cluster.yaml`):
///
/// ```yaml
/// heartbeat_interval_ms: 1000      # how often workers report load to placement (default 1000)
/// workers:
///   - name: fast                   # with count N > 1 the workers are fast-1 … fast-N
///     count: 4                     # default 1
///     role: prefill                # prefill | decode | both (default both)
///     labels: {box: compute}       # matched by the policy's pools
///     profile:                     # a worker config's profile block (Deploy/config/workers/*.yaml)
///       sgemm_gflops: 400
///       memory_read_gbps: 20
///       memory_free: 48GiB
///       cores: 32
///       host_id: rack-a            # one host id per entry: each worker gets its own (`rack-a-1`, …) unless
///                                  # `shared_host: true` puts them all on that one host
///     link: {bandwidth_gbps: 1.25, latency_ms: 0.1}   # the worker's network link (default 10 GbE, 0.1 ms)
///     max_batch: 8                 # sequences per decode step (default 8)
///     context: 4096                # tokens per request (default 4096)
///     kv_blocks: 2048              # KV blocks of 16 tokens (default: max_batch full contexts; prefill-only: one)
///   - config: ../workers/compute-box.yaml   # a worker config file (relative to this one): name, role, labels
///     count: 2                               # and profile come from it; count, link, max_batch, context and
///                                            # kv_blocks may be set here
/// ```
///
/// Profile fields left out count as 0 (cores as 1): nothing is measured. Errors name the file, line and key.
public struct SimulatedCluster: Sendable, Equatable {
    public struct Worker: Sendable, Equatable {
        public var profile: DeviceProfile
        public var roles: [WorkerRole]
        public var link: LinkProfile
        public var maxBatch: Int
        /// KV blocks; nil: the default for the role (see the file format).
        public var kvBlocks: Int?
        public var context: Int

        public init(profile: DeviceProfile, roles: [WorkerRole], link: LinkProfile = .defaultLink, maxBatch: Int = 8,
                    kvBlocks: Int? = nil, context: Int = 4096) {
            self.profile = profile
            self.roles = roles
            self.link = link
            self.maxBatch = maxBatch
            self.kvBlocks = kvBlocks
            self.context = context
        }
    }

    public var workers: [Worker]
    public var heartbeatIntervalSeconds: Double
    /// The file it was read from (for messages).
    public var source: String?

    public init(workers: [Worker], heartbeatIntervalSeconds: Double = 1, source: String? = nil) {
        self.workers = workers
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
        self.source = source
    }

    /// Reads a cluster file.
    public static func load(path: String) throws(PlacementError) -> SimulatedCluster {
        guard let root = try ConfigNode.load(path: path) else {
            throw PlacementError(.invalidConfig, "cluster file is empty; 'workers' is required", location: .init(file: path))
        }
        return try SimulatedCluster(node: root, directory: (path as NSString).deletingLastPathComponent)
    }

    /// Parses cluster text; `file` names it in errors and `directory` anchors relative `config:` paths.
    public static func parse(yaml: String, file: String, directory: String = ".") throws(PlacementError) -> SimulatedCluster {
        guard let root = try ConfigNode.parse(yaml: yaml, file: file) else {
            throw PlacementError(.invalidConfig, "cluster file is empty; 'workers' is required", location: .init(file: file))
        }
        return try SimulatedCluster(node: root, directory: directory)
    }

    static let entryKeys = ["name", "count", "role", "labels", "profile", "link", "max_batch", "context", "kv_blocks",
                            "config", "shared_host"]

    init(node: ConfigNode, directory: String) throws(PlacementError) {
        let map = try node.mapping(allowed: ["heartbeat_interval_ms", "workers"])
        var interval = 1.0
        if let v = map["heartbeat_interval_ms"], !v.isNull { interval = try v.double(in: 10...600_000) / 1000 }
        guard let list = map["workers"], !list.isNull else { throw node.error("'workers' is required") }
        var workers: [Worker] = []
        var seen: [String: String] = [:]
        for entry in try list.sequence() {
            for worker in try Self.entry(entry, directory: directory) {
                if let earlier = seen[worker.profile.name] {
                    throw entry.error("worker name '\(worker.profile.name)' is used twice (first at \(earlier))")
                }
                seen[worker.profile.name] = entry.path
                workers.append(worker)
            }
        }
        guard !workers.isEmpty else { throw list.error("the cluster has no workers") }
        self.init(workers: workers, heartbeatIntervalSeconds: interval, source: node.file)
    }

    private enum Role: String, CaseIterable {
        case prefill, decode, both
        var roles: [WorkerRole] { self == .prefill ? [.prefill] : self == .decode ? [.decode] : [.decode, .prefill] }
    }

    private static func entry(_ node: ConfigNode, directory: String) throws(PlacementError) -> [Worker] {
        let map = try node.mapping(allowed: entryKeys)
        var name: String
        var roles: [WorkerRole] = [.decode, .prefill]
        var labels: [String: String] = [:]
        var declared = DeclaredProfile()
        if let v = map["config"], !v.isNull {
            for key in ["name", "role", "labels", "profile"] where map[key] != nil {
                throw map[key]!.error("'\(key)' comes from the worker config given by 'config'; set it there")
            }
            var path = try v.string()
            if !path.hasPrefix("/") { path = (directory as NSString).appendingPathComponent(path) }
            let config = try WorkerConfig.load(path: path)
            name = config.name
            roles = config.roles
            labels = config.labels
            declared = config.declaredProfile
        } else {
            guard let v = map["name"], !v.isNull else { throw node.error("'name' is required (or 'config' naming a worker file)") }
            name = try v.string()
            if let v = map["role"], !v.isNull { roles = try v.choice(Role.self).roles }
            if let v = map["labels"] { labels = try v.stringMap() }
            if let v = map["profile"] { declared = try DeclaredProfile(node: v) }
        }
        guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
            throw (map["name"] ?? node).error("a worker name must be non-empty and contain no spaces")
        }
        let count = try map["count"].flatMap { $0.isNull ? nil : $0 }.map { v throws(PlacementError) in try v.int(in: 1...1_000_000) } ?? 1
        var link = LinkProfile.defaultLink
        if let v = map["link"] {
            let m = try v.mapping(allowed: ["bandwidth_gbps", "latency_ms"])
            if let s = m["bandwidth_gbps"], !s.isNull { link.bandwidthGBps = try s.double(in: 1e-6...1e6) }
            if let s = m["latency_ms"], !s.isNull { link.latencySeconds = try s.double(in: 0...60_000) / 1000 }
        }
        let maxBatch = try map["max_batch"].flatMap { $0.isNull ? nil : $0 }.map { v throws(PlacementError) in try v.int(in: 1...100_000) } ?? 8
        let context = try map["context"].flatMap { $0.isNull ? nil : $0 }.map { v throws(PlacementError) in try v.int(in: 16...10_000_000) } ?? 4096
        let kvBlocks = try map["kv_blocks"].flatMap { $0.isNull ? nil : $0 }.map { v throws(PlacementError) in try v.int(in: 1...1_000_000_000) }
        if let kvBlocks, kvBlocks * 16 < context, let v = map["kv_blocks"] {
            throw v.error("kv_blocks \(kvBlocks) cannot hold one full context of \(context) tokens (\((context + 15) / 16) blocks)")
        }
        let sharedHost = try map["shared_host"].flatMap { $0.isNull ? nil : $0 }.map { v throws(PlacementError) in try v.bool() } ?? false
        let base = DeviceProfile(name: name, sgemmGFLOPS: 0, memoryReadGBps: 0, memoryTotalBytes: 0, memoryFreeBytes: 0,
                                 cores: 1).applying(declared)
        if base.sgemmGFLOPS <= 0 || base.memoryReadGBps <= 0 {
            throw (map["profile"] ?? map["config"] ?? node).error(
                "worker '\(name)' needs profile.sgemm_gflops and profile.memory_read_gbps above 0: the simulator's times scale with them")
        }
        return (1...count).map { index in
            var profile = base
            profile.labels.merge(labels) { declared, _ in declared }
            if count > 1 {
                profile.name = "\(name)-\(index)"
                if !sharedHost, let host = base.transports.sharedMemoryHostID { profile.transports.sharedMemoryHostID = "\(host)-\(index)" }
            }
            return Worker(profile: profile, roles: roles, link: link, maxBatch: maxBatch, kvBlocks: kvBlocks, context: context)
        }
    }
}

extension LinkProfile {
    /// 10 GbE (1.25 GB/s) with 0.1 ms to the switch.
    public static let defaultLink = LinkProfile(bandwidthGBps: 1.25, latencySeconds: 0.0001)
}
