import Foundation

/// The placement service's config file: which workers may prefill and decode, how candidates are
/// scored and balanced, when to skip disaggregation, SLO targets for admission, heartbeat timeout.
/// Every field has a documented default, so an empty file is a valid policy. The fully commented
/// reference is `Deploy/config/policy.yaml`.
public struct PlacementPolicy: Sendable, Equatable {
    /// Who may serve one role. A worker must pass every set filter; unset filters pass everyone.
    public struct Pool: Sendable, Equatable {
        /// Minimum `sgemm_gflops`. Default 0.
        public var minGFLOPS: Double = 0
        /// Minimum `memory_read_gbps`. Default 0.
        public var minBandwidthGBps: Double = 0
        /// Minimum free memory, bytes (YAML accepts `8GiB`). Default 0.
        public var minFreeMemoryBytes: Int = 0
        /// Labels the worker must carry, all with these values. Default none.
        public var labels: [String: String] = [:]
        /// When non-empty, only these workers (by name). Default empty: any worker.
        public var workers: [String] = []
        /// Never these workers. Default empty.
        public var excludeWorkers: [String] = []

        public init() {}
    }

    /// Weights of one role's score: `compute·(gflops/best gflops) + bandwidth·(GB/s / best GB/s) − load·load`,
    /// where the "best" values are over that role's eligible candidates and load is in 0...1.
    public struct Weights: Sendable, Equatable {
        public var compute: Double
        public var bandwidth: Double
        public var load: Double

        public init(compute: Double, bandwidth: Double, load: Double) {
            self.compute = compute
            self.bandwidth = bandwidth
            self.load = load
        }
    }

    /// Cost of handing KV from a prefill worker to a decode worker, by the best link both support.
    /// A worker doing both halves itself costs 0.
    public struct LinkCosts: Sendable, Equatable {
        /// Same host (equal shared-memory host ids). Default 0.
        public var sharedMemory: Double = 0
        /// Both have RDMA devices. Default 0.25.
        public var rdma: Double = 0.25
        /// Anything else (TLS over TCP). Default 1.
        public var tcp: Double = 1

        public init() {}

        public func cost(_ link: LinkKind) -> Double {
            switch link {
            case .local: 0
            case .sharedMemory: sharedMemory
            case .rdma: rdma
            case .tcp: tcp
            }
        }
    }

    public struct Scoring: Sendable, Equatable {
        /// Default compute 1, bandwidth 0, load 0.5: prefill is compute-bound.
        public var prefill = Weights(compute: 1, bandwidth: 0, load: 0.5)
        /// Default compute 0, bandwidth 1, load 0.5: decode is memory-bandwidth-bound.
        public var decode = Weights(compute: 0, bandwidth: 1, load: 0.5)
        /// Weight of the link cost subtracted from a pair's score. Default 0.3.
        public var linkWeight: Double = 0.3
        public var linkCosts = LinkCosts()

        public init() {}
    }

    public enum BalancingStrategy: String, Sendable, Equatable, CaseIterable, Codable {
        /// Compare every eligible candidate and take the best-scoring pair (the load term makes
        /// the least-loaded of otherwise equal workers win). Deterministic.
        case leastLoaded = "least_loaded"
        /// Sample two candidates per role at random and take the better pair: less herding when many
        /// routers decide at once. Reproducible with a seeded generator.
        case powerOfTwo = "power_of_two"
        /// Each role's eligible workers in name order, in turn: the n-th request placed goes to the next one,
        /// whatever the scores and loads (workers at capacity are still skipped). The naive baseline that scoring is
        /// measured against (`Deploy/scripts/mismatched_boxes.py`); deterministic for a router's sequence of requests.
        case roundRobin = "round_robin"
    }

    public struct Balancing: Sendable, Equatable {
        /// Default `least_loaded`.
        public var strategy: BalancingStrategy = .leastLoaded
        /// Seed for `power_of_two`'s generator; nil (the default) means seeded from the clock at start.
        public var seed: UInt64?

        public init() {}
    }

    public struct Disaggregation: Sendable, Equatable {
        /// Prompts shorter than this many tokens run entirely on a decode worker (no KV hand-off).
        /// Default 64. 0 means always disaggregate.
        public var minPromptTokens: Int = 64
        /// When no worker is eligible for prefill at all, run the whole request on a decode worker
        /// instead of answering 503. Default true.
        public var fallbackToDecodeOnly: Bool = true

        public init() {}
    }

    /// Service-level objectives used for admission: a worker that misses them while it still has work is
    /// "overloaded" and skipped; when every candidate of a role is overloaded the request gets 429.
    public struct SLO: Sendable, Equatable {
        /// Time to first token target, ms, compared with the worker's reported recent TTFT. Default 2000.
        public var ttftMs: Double = 2000
        /// Time per output token target, ms, compared with the decode worker's recent TPOT. Default 200.
        public var tpotMs: Double = 200
        /// A worker with this many queued requests takes no more (under `admission.policy: queue`, requests
        /// placed since its last heartbeat count as queued too). Also the scale of the load term. Default 4:
        /// a request waits better in the router's queue, where it can still go to whichever worker frees first,
        /// than in one worker's queue, where its decode reservation's clock already runs.
        public var maxQueueDepth: Int = 4
        /// `Retry-After` for 429 answers, seconds. Default 1.
        public var retryAfterSeconds: Double = 1

        public init() {}
    }

    /// What routers do when a request's worker fails mid-generation.
    public struct Resume: Sendable, Equatable {
        /// Times one request may move to other workers (decode worker lost, silent or failing; prefill worker
        /// or KV transfer failing) before the client gets the error. Default 3; 0 turns resuming off.
        public var maxMigrations: Int = 3

        public init() {}
    }

    /// What happens to a request when every candidate worker is at capacity.
    public enum AdmissionPolicy: String, Sendable, Equatable, CaseIterable, Codable {
        /// Wait in the router's bounded queue (FIFO) until a worker has room; 429 only when the queue is full,
        /// 504 when the wait passes `admission.max_wait_seconds`. Workers' recent TTFT is not held against
        /// `slo.ttft_ms`. Every request the box can serve is served, at the price of a longer TTFT under load.
        case queue
        /// Refuse at once (429 with `Retry-After`) when every candidate misses `slo.ttft_ms`, has a full queue or
        /// a full KV cache: clients see overload immediately and can go elsewhere, at the price of refusing
        /// requests the box would have served a few seconds later.
        case ttftTarget = "ttft_target"
    }

    public struct Admission: Sendable, Equatable {
        /// Default `queue`.
        public var policy: AdmissionPolicy = .queue
        /// Requests a router holds while every worker is at capacity; one more gets 429. Default 256.
        public var maxWaiting: Int = 256
        /// Longest a request waits in a router's queue before it is answered 504. Default 300.
        public var maxWaitSeconds: Double = 300

        public init() {}
    }

    public struct Membership: Sendable, Equatable {
        /// A worker with no heartbeat for this long is marked lost and gets no new requests. Default 10.
        public var heartbeatTimeoutSeconds: Double = 10

        public init() {}
    }

    public var prefill = Pool()
    public var decode = Pool()
    public var scoring = Scoring()
    public var balancing = Balancing()
    public var disaggregation = Disaggregation()
    public var slo = SLO()
    public var admission = Admission()
    public var membership = Membership()
    public var resume = Resume()
    /// The file the policy was read from, if any (for messages).
    public var source: String?

    /// The all-defaults policy.
    public init() {}

    /// Loads and validates a policy file. Errors name the file, line, column and key.
    public static func load(path: String) throws(PlacementError) -> PlacementPolicy {
        var policy = try ConfigNode.load(path: path).map { node throws(PlacementError) in try PlacementPolicy(node: node) }
            ?? PlacementPolicy()
        policy.source = path
        return policy
    }

    /// Parses policy text; `file` names it in errors.
    public static func parse(yaml: String, file: String = "<policy>") throws(PlacementError) -> PlacementPolicy {
        var policy = try ConfigNode.parse(yaml: yaml, file: file).map { node throws(PlacementError) in try PlacementPolicy(node: node) }
            ?? PlacementPolicy()
        policy.source = file
        return policy
    }

    init(node: ConfigNode) throws(PlacementError) {
        self.init()
        let map = try node.mapping(allowed: ["prefill", "decode", "scoring", "balancing", "disaggregation", "slo", "admission",
                                             "membership", "resume"])
        if let v = map["prefill"] { prefill = try Pool(node: v) }
        if let v = map["decode"] { decode = try Pool(node: v) }
        if let v = map["scoring"] { scoring = try Scoring(node: v) }
        if let v = map["balancing"] {
            let m = try v.mapping(allowed: ["strategy", "seed"])
            if let s = m["strategy"], !s.isNull { balancing.strategy = try s.choice(BalancingStrategy.self) }
            if let s = m["seed"], !s.isNull { balancing.seed = UInt64(try s.int(in: 0...Int.max)) }
        }
        if let v = map["disaggregation"] {
            let m = try v.mapping(allowed: ["min_prompt_tokens", "fallback_to_decode_only"])
            if let s = m["min_prompt_tokens"], !s.isNull { disaggregation.minPromptTokens = try s.int(in: 0...10_000_000) }
            if let s = m["fallback_to_decode_only"], !s.isNull { disaggregation.fallbackToDecodeOnly = try s.bool() }
        }
        if let v = map["slo"] {
            let m = try v.mapping(allowed: ["ttft_ms", "tpot_ms", "max_queue_depth", "retry_after_seconds"])
            if let s = m["ttft_ms"], !s.isNull { slo.ttftMs = try s.double(in: 1...86_400_000) }
            if let s = m["tpot_ms"], !s.isNull { slo.tpotMs = try s.double(in: 1...86_400_000) }
            if let s = m["max_queue_depth"], !s.isNull { slo.maxQueueDepth = try s.int(in: 1...1_000_000) }
            if let s = m["retry_after_seconds"], !s.isNull { slo.retryAfterSeconds = try s.double(in: 0...86_400) }
        }
        if let v = map["resume"] {
            let m = try v.mapping(allowed: ["max_migrations"])
            if let s = m["max_migrations"], !s.isNull { resume.maxMigrations = try s.int(in: 0...100) }
        }
        if let v = map["admission"] {
            let m = try v.mapping(allowed: ["policy", "max_waiting", "max_wait_seconds"])
            if let s = m["policy"], !s.isNull { admission.policy = try s.choice(AdmissionPolicy.self) }
            if let s = m["max_waiting"], !s.isNull { admission.maxWaiting = try s.int(in: 0...1_000_000) }
            if let s = m["max_wait_seconds"], !s.isNull { admission.maxWaitSeconds = try s.double(in: 0...86_400) }
        }
        if let v = map["membership"] {
            let m = try v.mapping(allowed: ["heartbeat_timeout_seconds"])
            if let s = m["heartbeat_timeout_seconds"], !s.isNull {
                membership.heartbeatTimeoutSeconds = try s.double(in: 0.1...86_400)
            }
        }
    }
}

extension PlacementPolicy.Pool {
    init(node: ConfigNode) throws(PlacementError) {
        self.init()
        let map = try node.mapping(allowed: ["min_gflops", "min_bandwidth_gbps", "min_free_memory", "labels",
                                             "workers", "exclude_workers"])
        if let v = map["min_gflops"], !v.isNull { minGFLOPS = try v.double(in: 0...1e9) }
        if let v = map["min_bandwidth_gbps"], !v.isNull { minBandwidthGBps = try v.double(in: 0...1e6) }
        if let v = map["min_free_memory"], !v.isNull { minFreeMemoryBytes = try v.bytes() }
        if let v = map["labels"] { labels = try v.stringMap() }
        if let v = map["workers"] { workers = try v.stringList() }
        if let v = map["exclude_workers"] { excludeWorkers = try v.stringList() }
        if let both = Set(workers).intersection(excludeWorkers).sorted().first, let v = map["exclude_workers"] {
            throw v.error("worker '\(both)' is both listed in 'workers' and excluded")
        }
    }
}

extension PlacementPolicy.Weights {
    init(node: ConfigNode, defaults: Self) throws(PlacementError) {
        self = defaults
        let map = try node.mapping(allowed: ["compute", "bandwidth", "load"])
        if let v = map["compute"], !v.isNull { compute = try v.double(in: 0...1000) }
        if let v = map["bandwidth"], !v.isNull { bandwidth = try v.double(in: 0...1000) }
        if let v = map["load"], !v.isNull { load = try v.double(in: 0...1000) }
    }
}

extension PlacementPolicy.Scoring {
    init(node: ConfigNode) throws(PlacementError) {
        self.init()
        let map = try node.mapping(allowed: ["prefill", "decode", "link_weight", "link_cost"])
        if let v = map["prefill"] { prefill = try .init(node: v, defaults: prefill) }
        if let v = map["decode"] { decode = try .init(node: v, defaults: decode) }
        if let v = map["link_weight"], !v.isNull { linkWeight = try v.double(in: 0...1000) }
        if let v = map["link_cost"] {
            let m = try v.mapping(allowed: ["shared_memory", "rdma", "tcp"])
            if let s = m["shared_memory"], !s.isNull { linkCosts.sharedMemory = try s.double(in: 0...1000) }
            if let s = m["rdma"], !s.isNull { linkCosts.rdma = try s.double(in: 0...1000) }
            if let s = m["tcp"], !s.isNull { linkCosts.tcp = try s.double(in: 0...1000) }
            if !(linkCosts.sharedMemory <= linkCosts.rdma && linkCosts.rdma <= linkCosts.tcp) {
                throw v.error("link costs must be ordered shared_memory ≤ rdma ≤ tcp "
                    + "(got \(ConfigNode.format(linkCosts.sharedMemory)), \(ConfigNode.format(linkCosts.rdma)), "
                    + "\(ConfigNode.format(linkCosts.tcp)))")
            }
        }
    }
}

// The policy travels to routers inside membership snapshots (JSON); the YAML file stays the one way to write it.
extension PlacementPolicy: Codable {}
extension PlacementPolicy.Pool: Codable {}
extension PlacementPolicy.Weights: Codable {}
extension PlacementPolicy.LinkCosts: Codable {}
extension PlacementPolicy.Scoring: Codable {}
extension PlacementPolicy.Balancing: Codable {}
extension PlacementPolicy.Disaggregation: Codable {}
extension PlacementPolicy.SLO: Codable {}
extension PlacementPolicy.Admission: Codable {}
extension PlacementPolicy.Membership: Codable {}
extension PlacementPolicy.Resume: Codable {}
