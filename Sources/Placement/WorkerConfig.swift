import Foundation

/// The placement-relevant part of a worker's YAML config (see `Deploy/config/workers/`):
///
/// ```yaml
/// name: compute-box            # required; unique in the cluster
/// role: prefill                # prefill | decode | both (default both)
/// threads: 2                   # compute threads, also used by the profiler (default: all cores)
/// labels: {box: compute}       # free-form, matched by policies (default none)
/// profile:                     # declared profile fields; each overrides the measured one
///   sgemm_gflops: 400
///   memory_read_gbps: 12
///   memory_total: 64GiB
///   memory_free: 48GiB
///   cores: 32
///   rdma_devices: [mlx5_0]
///   host_id: box-a
/// profile_cache:
///   path: ~/.cache/baton/profile.json   # default: none (measure at every start)
///   max_age_seconds: 86400              # default one day
/// ```
public struct WorkerConfig: Sendable, Equatable {
    public var name: String
    public var roles: [WorkerRole]
    public var threads: Int?
    public var labels: [String: String]
    public var declaredProfile: DeclaredProfile
    /// Profile cache file, with `~` expanded; nil means measure at every start.
    public var profileCachePath: String?
    /// Seconds a cached profile stays valid. Default 86 400 (one day).
    public var profileCacheMaxAge: TimeInterval

    public init(name: String, roles: [WorkerRole] = WorkerRole.allCases, threads: Int? = nil,
                labels: [String: String] = [:], declaredProfile: DeclaredProfile = DeclaredProfile(),
                profileCachePath: String? = nil, profileCacheMaxAge: TimeInterval = 86_400) {
        self.name = name
        self.roles = roles
        self.threads = threads
        self.labels = labels
        self.declaredProfile = declaredProfile
        self.profileCachePath = profileCachePath
        self.profileCacheMaxAge = profileCacheMaxAge
    }

    static let keys = ["name", "role", "threads", "labels", "profile", "profile_cache"]

    /// Loads a worker config file.
    /// - Parameter additionalKeys: top-level keys another module parses itself (for example the
    ///   worker's listen address); they are accepted here and otherwise ignored.
    public static func load(path: String, additionalKeys: [String] = []) throws(PlacementError) -> WorkerConfig {
        guard let root = try ConfigNode.load(path: path) else {
            throw PlacementError(.invalidConfig, "worker config is empty; 'name' is required",
                                 location: .init(file: path))
        }
        return try WorkerConfig(node: root, additionalKeys: additionalKeys)
    }

    /// Parses worker config text; `file` names it in errors.
    public static func parse(yaml: String, file: String, additionalKeys: [String] = []) throws(PlacementError) -> WorkerConfig {
        guard let root = try ConfigNode.parse(yaml: yaml, file: file) else {
            throw PlacementError(.invalidConfig, "worker config is empty; 'name' is required",
                                 location: .init(file: file))
        }
        return try WorkerConfig(node: root, additionalKeys: additionalKeys)
    }

    init(node: ConfigNode, additionalKeys: [String]) throws(PlacementError) {
        let map = try node.mapping(allowed: Self.keys + additionalKeys)
        guard let nameNode = map["name"], !nameNode.isNull else { throw node.error("'name' is required") }
        let name = try nameNode.string()
        guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
            throw nameNode.error("a worker name must be non-empty and contain no spaces")
        }
        self.init(name: name)
        if let v = map["role"], !v.isNull { roles = try RoleSpelling(node: v).roles }
        if let v = map["threads"], !v.isNull { threads = try v.int(in: 1...4096) }
        if let v = map["labels"] { labels = try v.stringMap() }
        if let v = map["profile"] { declaredProfile = try DeclaredProfile(node: v) }
        declaredProfile.name = name
        declaredProfile.labels.merge(labels) { declared, _ in declared }
        if let cache = map["profile_cache"] {
            let cacheMap = try cache.mapping(allowed: ["path", "max_age_seconds"])
            if let v = cacheMap["path"], !v.isNull { profileCachePath = NSString(string: try v.string()).expandingTildeInPath }
            if let v = cacheMap["max_age_seconds"], !v.isNull { profileCacheMaxAge = try v.double(in: 0...1e9) }
        }
    }
}

/// `prefill`, `decode` or `both`.
enum RoleSpelling: String, CaseIterable {
    case prefill, decode, both

    init(node: ConfigNode) throws(PlacementError) {
        self = try node.choice(RoleSpelling.self)
    }

    var roles: [WorkerRole] {
        switch self {
        case .prefill: [.prefill]
        case .decode: [.decode]
        case .both: [.decode, .prefill]
        }
    }
}
