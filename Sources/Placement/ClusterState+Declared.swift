import Foundation

extension ClusterState {
    /// A cluster described by worker config files instead of a membership log, for
    /// `baton placement explain --workers` and tests. Each file is either one worker config (see
    /// `WorkerConfig`) or a mapping with a `workers:` list of them. Every entry may also carry the
    /// load to assume:
    ///
    /// ```yaml
    /// load: {queue_depth: 3, active_sequences: 8, free_kv_blocks: 100, total_kv_blocks: 512,
    ///        recent_ttft_ms: 250, recent_tpot_ms: 40}
    /// ```
    ///
    /// Profile fields a file leaves out count as 0 (cores as 1): nothing is measured.
    public static func declared(workerFiles: [String], at time: Date = Date(timeIntervalSince1970: 0))
        throws(PlacementError) -> ClusterState
    {
        var entries: [(WorkerConfig, WorkerLoad, ConfigNode)] = []
        for path in workerFiles {
            guard let root = try ConfigNode.load(path: path) else {
                throw PlacementError(.invalidConfig, "workers file is empty", location: .init(file: path))
            }
            entries += try parseEntries(root)
        }
        return try build(entries, at: time)
    }

    /// Same as `declared(workerFiles:)` for text; `file` names it in errors.
    public static func declared(yaml: String, file: String, at time: Date = Date(timeIntervalSince1970: 0))
        throws(PlacementError) -> ClusterState
    {
        guard let root = try ConfigNode.parse(yaml: yaml, file: file) else {
            throw PlacementError(.invalidConfig, "workers file is empty", location: .init(file: file))
        }
        return try build(parseEntries(root), at: time)
    }

    private static func parseEntries(_ root: ConfigNode) throws(PlacementError) -> [(WorkerConfig, WorkerLoad, ConfigNode)] {
        var nodes: [ConfigNode] = [root]
        if case .mapping(let mapping) = root.node, mapping["workers"] != nil {
            let top = try root.mapping(allowed: ["workers"])
            nodes = try top["workers"]?.sequence() ?? []
        }
        var result: [(WorkerConfig, WorkerLoad, ConfigNode)] = []
        for node in nodes {
            let config = try WorkerConfig(node: node, additionalKeys: ["load"])
            var load = WorkerLoad()
            if let loadNode = try node.mapping(allowed: WorkerConfig.keys + ["load"])["load"] {
                load = try WorkerLoad(node: loadNode)
            }
            result.append((config, load, node))
        }
        return result
    }

    private static func build(_ entries: [(WorkerConfig, WorkerLoad, ConfigNode)], at time: Date)
        throws(PlacementError) -> ClusterState
    {
        var state = ClusterState()
        for (config, load, node) in entries {
            if state.workers[config.name] != nil {
                throw node.error("worker '\(config.name)' is declared twice")
            }
            let base = DeviceProfile(name: config.name, sgemmGFLOPS: 0, memoryReadGBps: 0, memoryTotalBytes: 0,
                                     memoryFreeBytes: 0, cores: 1)
            state.apply(.joined(profile: base.applying(config.declaredProfile), roles: config.roles, at: time))
            state.apply(.heartbeat(worker: config.name, load: load, at: time))
        }
        return state
    }
}

extension WorkerLoad {
    init(node: ConfigNode) throws(PlacementError) {
        self.init()
        let map = try node.mapping(allowed: ["queue_depth", "active_sequences", "free_kv_blocks", "total_kv_blocks",
                                             "recent_ttft_ms", "recent_tpot_ms"])
        if let v = map["queue_depth"], !v.isNull { queueDepth = try v.int(in: 0...Int.max) }
        if let v = map["active_sequences"], !v.isNull { activeSequences = try v.int(in: 0...Int.max) }
        if let v = map["free_kv_blocks"], !v.isNull { freeKVBlocks = try v.int(in: 0...Int.max) }
        if let v = map["total_kv_blocks"], !v.isNull { totalKVBlocks = try v.int(in: 0...Int.max) }
        if let v = map["recent_ttft_ms"], !v.isNull { recentTTFTMs = try v.double(in: 0...1e9) }
        if let v = map["recent_tpot_ms"], !v.isNull { recentTPOTMs = try v.double(in: 0...1e9) }
        if let total = totalKVBlocks, freeKVBlocks > total, let v = map["free_kv_blocks"] {
            throw v.error("free_kv_blocks \(freeKVBlocks) exceeds total_kv_blocks \(total)")
        }
    }
}
