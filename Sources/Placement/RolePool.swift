import Foundation

/// One role's candidates: who is excluded, overloaded or eligible, and the eligible ones' scores.
struct RolePool {
    struct Scored {
        let worker: ClusterState.Worker
        let score: Decision.Score
    }

    let role: WorkerRole
    private(set) var eligible: [Scored] = []
    /// Excluded and overloaded workers with their reasons; kept only when explaining.
    private var rejected: [(worker: ClusterState.Worker, outcome: Decision.Candidate.Outcome, reasons: [String])] = []
    private var sampled: Set<String>?
    private(set) var overloadedCount = 0

    /// - Parameters:
    ///   - checksTTFT: whether this role's worker produces the first token (prefill, or decode in decode-only
    ///     mode), so its recent TTFT is held against `slo.ttft_ms`.
    ///   - explains: whether to word the reasons of excluded and overloaded workers. Without, every reason is
    ///     the empty string: the same workers are excluded, overloaded and eligible, nothing is formatted.
    init(role: WorkerRole, workers: [ClusterState.Worker], policy: PlacementPolicy, checksTTFT: Bool,
         explains: Bool = true) {
        self.role = role
        let pool = role == .prefill ? policy.prefill : policy.decode
        let weights = role == .prefill ? policy.scoring.prefill : policy.scoring.decode
        let key = role.rawValue
        // Indices into `workers`: copying a thousand members' values (and sorting them) was most of a placement.
        var passing: [Int] = []
        for (index, worker) in workers.enumerated() {
            let profile = worker.profile
            var reasons: [String] = []
            func reason(_ text: @autoclosure () -> String) { reasons.append(explains ? text() : "") }
            if !worker.roles.contains(role) {
                reason("does not serve \(key) (roles: \(worker.roles.isEmpty ? "none" : worker.roles.map(\.rawValue).joined(separator: ", ")))")
            }
            if worker.status == .lost { reason("heartbeat lost") }
            if worker.status == .draining { reason("draining (finishing its requests, takes no new ones)") }
            if !pool.workers.isEmpty, !pool.workers.contains(worker.name) { reason("not listed in \(key).workers") }
            if pool.excludeWorkers.contains(worker.name) { reason("listed in \(key).exclude_workers") }
            for (label, value) in pool.labels.sorted(by: { $0.key < $1.key }) {
                if let actual = profile.labels[label] {
                    if actual != value { reason("label \(label)=\(actual), \(key).labels wants \(label)=\(value)") }
                } else {
                    reason("no label \(label), \(key).labels wants \(label)=\(value)")
                }
            }
            if profile.sgemmGFLOPS < pool.minGFLOPS {
                reason("sgemm \(fmt(profile.sgemmGFLOPS)) GFLOP/s < \(key).min_gflops \(fmt(pool.minGFLOPS))")
            }
            if profile.memoryReadGBps < pool.minBandwidthGBps {
                reason("memory read \(fmt(profile.memoryReadGBps)) GB/s < \(key).min_bandwidth_gbps "
                    + "\(fmt(pool.minBandwidthGBps))")
            }
            if profile.memoryFreeBytes < pool.minFreeMemoryBytes {
                reason("free memory \(ByteCount.format(profile.memoryFreeBytes)) < \(key).min_free_memory "
                    + "\(ByteCount.format(pool.minFreeMemoryBytes))")
            }
            if !reasons.isEmpty {
                if explains { rejected.append((worker, .excluded, reasons)) }
                continue
            }
            let load = worker.load
            // Refusing (ttft_target) goes by the reported queue only: requests placed since the last heartbeat may
            // already be running, and refusing bursts a worker can take is worse than a slightly deep queue.
            // Queueing holds them at the router instead, which costs nothing, so there they count.
            let queued = policy.admission.policy == .queue ? load.queueDepth + worker.pending : load.queueDepth
            if queued >= policy.slo.maxQueueDepth {
                reason((queued == load.queueDepth ? "queue depth \(queued)" : "queue depth \(load.queueDepth) + \(worker.pending) just placed")
                    + " ≥ slo.max_queue_depth \(policy.slo.maxQueueDepth)")
            }
            if role == .decode, let total = load.totalKVBlocks, total > 0, load.freeKVBlocks <= 0 {
                reason("KV cache full (0 of \(total) blocks free)")
            }
            if checksTTFT, policy.admission.policy == .ttftTarget, let ttft = load.recentTTFTMs, ttft > policy.slo.ttftMs, load.queueDepth > 0 {
                reason("recent TTFT \(fmt(ttft)) ms > slo.ttft_ms \(fmt(policy.slo.ttftMs)) "
                    + "with \(load.queueDepth) queued")
            }
            if role == .decode, let tpot = load.recentTPOTMs, tpot > policy.slo.tpotMs, load.activeSequences > 0 {
                reason("recent TPOT \(fmt(tpot)) ms > slo.tpot_ms \(fmt(policy.slo.tpotMs)) "
                    + "with \(load.activeSequences) active")
            }
            if !reasons.isEmpty {
                overloadedCount += 1
                if explains { rejected.append((worker, .overloaded, reasons)) }
                continue
            }
            passing.append(index)
        }

        let bestCompute = passing.map { workers[$0].profile.sgemmGFLOPS }.max() ?? 0
        let bestBandwidth = passing.map { workers[$0].profile.memoryReadGBps }.max() ?? 0
        let scores = passing.map { index in
            let worker = workers[index]
            let compute = bestCompute > 0 ? worker.profile.sgemmGFLOPS / bestCompute : 0
            let bandwidth = bestBandwidth > 0 ? worker.profile.memoryReadGBps / bestBandwidth : 0
            let load = Self.load(worker.load, pending: worker.pending, maxQueueDepth: policy.slo.maxQueueDepth)
            let score = weights.compute * compute + weights.bandwidth * bandwidth - weights.load * load
            return Decision.Score(compute: compute, bandwidth: bandwidth, load: load, score: score)
        }
        let order = scores.indices.sorted { a, b in
            if scores[a].score != scores[b].score { return scores[a].score > scores[b].score }
            if scores[a].load != scores[b].load { return scores[a].load < scores[b].load }
            return workers[passing[a]].name < workers[passing[b]].name
        }
        eligible = order.map { Scored(worker: workers[passing[$0]], score: scores[$0]) }
    }

    /// Load in 0...1: the fuller of the queue (relative to `slo.max_queue_depth`) and the KV cache. Requests
    /// placed since the last heartbeat (`pending`) count as queued.
    static func load(_ load: WorkerLoad, pending: Int = 0, maxQueueDepth: Int) -> Double {
        let queue = min(1, Double(load.queueDepth + pending) / Double(max(1, maxQueueDepth)))
        var kv = 0.0
        if let total = load.totalKVBlocks, total > 0 {
            kv = min(1, max(0, 1 - Double(load.freeKVBlocks) / Double(total)))
        }
        return max(queue, kv)
    }

    mutating func markSampled(_ sample: [Scored]) {
        sampled = Set(sample.map(\.worker.name))
    }

    /// 429 when some candidates were only overloaded, 503 when none could serve the role at all.
    func refusal(retryAfter: TimeInterval) -> AdmissionDecision {
        let overloaded = rejected.filter { $0.outcome == .overloaded }
        if !overloaded.isEmpty {
            let detail = overloaded.map { "\($0.worker.name): \($0.reasons.joined(separator: "; "))" }.joined(separator: " | ")
            return .reject(reason: "every \(role.rawValue) worker is overloaded (\(detail))", retryAfter: retryAfter)
        }
        if rejected.isEmpty { return .unavailable(reason: "no \(role.rawValue) worker is registered") }
        let detail = rejected.map { "\($0.worker.name): \($0.reasons.joined(separator: "; "))" }.joined(separator: " | ")
        return .unavailable(reason: "no worker is eligible for \(role.rawValue) (\(detail))")
    }

    func candidates(chosen: String?) -> [Decision.Candidate] {
        var result: [Decision.Candidate] = eligible.enumerated().map { index, scored in
            let name = scored.worker.name
            let outcome: Decision.Candidate.Outcome =
                name == chosen ? .chosen : (sampled.map { $0.contains(name) } ?? true) ? .ranked : .notSampled
            return Decision.Candidate(worker: name, role: role, device: scored.worker.profile.summary, outcome: outcome,
                                      reasons: [], score: scored.score, rank: index + 1)
        }
        result += rejected.map {
            Decision.Candidate(worker: $0.worker.name, role: role, device: $0.worker.profile.summary,
                               outcome: $0.outcome, reasons: $0.reasons, score: nil, rank: nil)
        }
        return result
    }
}
