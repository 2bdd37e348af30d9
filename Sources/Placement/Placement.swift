import Foundation

/// The placement decision: pure, given the cluster state, the policy and a random generator.
///
/// Steps, in order:
/// 1. Mode. Prompts shorter than `disaggregation.min_prompt_tokens` run decode-only. So do all prompts
///    when no worker is eligible for prefill and `fallback_to_decode_only` is set.
/// 2. Candidates per role. A worker is *excluded* when it does not offer the role, is lost or draining, or
///    fails a pool filter (names, labels, thresholds); *overloaded* when its queue is at `slo.max_queue_depth`,
///    its KV cache is full (decode), or it misses an SLO while it still has work (recent TTFT for the
///    worker that prefills, recent TPOT for decode); otherwise *eligible* and scored. Requests placed on a
///    worker since its last heartbeat (`ClusterState.Worker.pending`) count as queued in its load score.
/// 3. Balancing. `least_loaded` compares every eligible pair (on large clusters through `PairSearch`, which finds
///    the same best pair without scoring them all); `power_of_two` samples two candidates per role with `rng`
///    and compares the pairs among them; `round_robin` takes each role's candidates in turn, ignoring scores.
///    Pair score = prefill score + decode score − link_weight × link cost.
///    Ties go to the lower combined load, then to names in order.
/// 4. Admission. No eligible candidate for a needed role: 429 if some were only overloaded, else 503.
public enum Placement {
    /// Decides where a prompt of `promptTokens` tokens runs. Throws only for a negative token count.
    ///
    /// With `explains` false the decision says what was decided (mode, workers, admission) and not why: no
    /// candidates, only the chosen pair, nothing formatted — what a router or the simulator needs per request, at
    /// a fraction of the cost on a large cluster. A refusal is always explained (it is decided again with its
    /// reasons: no random draw comes before a refusal, so that is the same decision).
    public static func choose<R: RandomNumberGenerator>(promptTokens: Int, state: ClusterState,
                                                       policy: PlacementPolicy, explains: Bool = true,
                                                       rng: inout R) throws(PlacementError) -> Decision {
        guard promptTokens >= 0 else {
            throw PlacementError(.invalidArgument, "prompt tokens must be non-negative, got \(promptTokens)")
        }
        let workers = state.sortedWorkers
        let threshold = policy.disaggregation.minPromptTokens

        var mode = Decision.Mode.disaggregated
        var modeReason: String
        var prefillPool: RolePool?
        if promptTokens < threshold {
            mode = .decodeOnly
            modeReason = "prompt of \(promptTokens) tokens is shorter than disaggregation.min_prompt_tokens \(threshold)"
        } else {
            modeReason = "prompt of \(promptTokens) tokens reaches disaggregation.min_prompt_tokens \(threshold)"
            let pool = RolePool(role: .prefill, workers: workers, policy: policy, checksTTFT: true, explains: explains)
            if pool.eligible.isEmpty, pool.overloadedCount == 0, policy.disaggregation.fallbackToDecodeOnly {
                mode = .decodeOnly
                modeReason += ", but no worker is eligible for prefill: running decode-only "
                    + "(disaggregation.fallback_to_decode_only)"
            } else {
                prefillPool = pool
            }
        }
        var decodePool = RolePool(role: .decode, workers: workers, policy: policy, checksTTFT: mode == .decodeOnly,
                                  explains: explains)

        // Admission: decode first, since without it nothing can run at all.
        var admission: AdmissionDecision?
        for pool in [decodePool, prefillPool].compactMap({ $0 }) where pool.eligible.isEmpty {
            if !explains { return try choose(promptTokens: promptTokens, state: state, policy: policy, rng: &rng) }
            admission = pool.refusal(retryAfter: policy.slo.retryAfterSeconds)
            break
        }

        var pairs: [Decision.PairScore] = []
        var chosen: Decision.PairScore?
        if admission == nil {
            let decodeSample = sample(decodePool.eligible, strategy: policy.balancing.strategy, turn: state.placements,
                                      rng: &rng)
            decodePool.markSampled(decodeSample)
            var prefillSample: [RolePool.Scored?] = [nil]
            if var pool = prefillPool {
                let sampled = sample(pool.eligible, strategy: policy.balancing.strategy, turn: state.placements,
                                     rng: &rng)
                pool.markSampled(sampled)
                prefillPool = pool
                prefillSample = sampled.map { $0 }
            }
            if prefillSample.count * decodeSample.count > Self.listedPairs, prefillPool != nil {
                // `least_loaded` on a large cluster: the best pair of each prefill candidate, without every pair.
                let search = PairSearch(decode: decodeSample, policy: policy)
                var best = prefillSample.compactMap { $0.flatMap(search.best(for:)) }
                if explains {
                    best.sort(by: isBetter)
                } else if let first = best.min(by: isBetter) {
                    best = [first]
                }
                pairs = best.prefix(Self.listedPairs).map(\.pair)
            } else if prefillSample.count * decodeSample.count > Self.listedPairs {
                // Decode-only on a large cluster: a pair's score and load are the decode candidate's own, so the
                // pool's order (score, load, name) is the pairs' order.
                pairs = decodeSample.prefix(Self.listedPairs).map { pairScore(nil, $0, link: nil, policy: policy).pair }
            } else {
                var scored: [ScoredPair] = []
                for p in prefillSample {
                    for d in decodeSample {
                        scored.append(pairScore(p, d, link: p.map { LinkKind.between($0.worker.profile, d.worker.profile) },
                                                policy: policy))
                    }
                }
                scored.sort(by: isBetter)
                pairs = scored.map(\.pair)
            }
            if !explains { pairs = Array(pairs.prefix(1)) }
            chosen = pairs.first
            if let chosen {
                admission = .admit(WorkerPair(prefill: chosen.prefill, decode: chosen.decode, link: chosen.link))
            }
        }

        var candidates: [Decision.Candidate] = []
        if explains {
            if let prefillPool { candidates += prefillPool.candidates(chosen: chosen?.prefill) }
            candidates += decodePool.candidates(chosen: chosen?.decode)
        }
        return Decision(
            promptTokens: promptTokens, mode: mode, modeReason: modeReason, strategy: policy.balancing.strategy,
            prefill: chosen?.prefill, decode: chosen?.decode,
            admission: admission ?? .unavailable(reason: "no worker pair could be formed"),
            candidates: candidates, pairs: pairs)
    }

    /// `choose`'s admission answer alone.
    public static func admit<R: RandomNumberGenerator>(promptTokens: Int, state: ClusterState, policy: PlacementPolicy,
                                                      rng: inout R) throws(PlacementError) -> AdmissionDecision {
        try choose(promptTokens: promptTokens, state: state, policy: policy, rng: &rng).admission
    }

    /// The roles, among those `offered`, for which `profile` passes the policy's pool filters (names, labels,
    /// thresholds) — what the placement service records with `roleAssigned` when a worker joins. Load and
    /// SLOs are not considered: they change by the second and are checked per request.
    public static func assignableRoles(for profile: DeviceProfile, offered: [WorkerRole],
                                       policy: PlacementPolicy) -> [WorkerRole] {
        assignRoles(for: profile, offered: offered, policy: policy).roles
    }

    /// The roles a joining worker is assigned (the offered ones the policy's pools allow), with a note
    /// naming each withheld role and why — the placement service logs both with `roleAssigned`.
    public static func assignRoles(for profile: DeviceProfile, offered: [WorkerRole],
                                   policy: PlacementPolicy) -> RoleAssignment {
        let worker = ClusterState.Worker(profile: profile, offeredRoles: offered.uniqueSorted(), assignedRoles: nil,
                                         status: .active, joinedAt: Date(timeIntervalSince1970: 0),
                                         lastSeen: Date(timeIntervalSince1970: 0), load: WorkerLoad())
        var roles: [WorkerRole] = []
        var withheld: [String] = []
        for role in offered.uniqueSorted() {
            let pool = RolePool(role: role, workers: [worker], policy: policy, checksTTFT: false)
            if !pool.eligible.isEmpty {
                roles.append(role)
            } else {
                let reasons = pool.candidates(chosen: nil).flatMap(\.reasons)
                withheld.append("\(role.rawValue) withheld: \(reasons.joined(separator: "; "))")
            }
        }
        let offeredText = offered.uniqueSorted().map(\.rawValue).joined(separator: ", ")
        let note = withheld.isEmpty ? nil
            : "offered \(offeredText.isEmpty ? "nothing" : offeredText); " + withheld.joined(separator: "; ")
        return RoleAssignment(roles: roles, note: note)
    }

    /// Pairs a decision lists at most. Up to this many prefill × decode pairs are all scored and listed; beyond,
    /// `least_loaded` finds the best one with `PairSearch` and lists the best pair of each prefill candidate.
    static let listedPairs = 64

    /// A pair's score, with the combined load that breaks ties.
    struct ScoredPair {
        var pair: Decision.PairScore
        var load: Double
    }

    /// Scores a pair: `prefill score + decode score − link_weight · link cost` (no prefill worker: decode-only).
    /// Every pair compared is scored here, so that all ways of searching agree bit for bit. A new term that depends
    /// on one worker belongs in its role score (`RolePool`), not here: `PairSearch` relies on a pair's score being
    /// its two role scores and a term of its link kind alone.
    static func pairScore(_ p: RolePool.Scored?, _ d: RolePool.Scored, link: LinkKind?,
                          policy: PlacementPolicy) -> ScoredPair {
        let linkCost = link.map { policy.scoring.linkCosts.cost($0) } ?? 0
        let score = (p?.score.score ?? 0) + d.score.score - policy.scoring.linkWeight * linkCost
        return ScoredPair(pair: Decision.PairScore(prefill: p?.worker.name, decode: d.worker.name, link: link,
                                                   linkCost: linkCost, score: score),
                          load: (p?.score.load ?? 0) + d.score.load)
    }

    /// The pairs' order: higher score, then lower combined load, then names in order.
    static func isBetter(_ a: ScoredPair, than b: ScoredPair) -> Bool {
        if a.pair.score != b.pair.score { return a.pair.score > b.pair.score }
        if a.load != b.load { return a.load < b.load }
        return pairKey(a.pair) < pairKey(b.pair)
    }

    private static func pairKey(_ pair: Decision.PairScore) -> String {
        "\(pair.prefill ?? "")\u{0}\(pair.decode)"
    }

    /// Every candidate for `least_loaded`; two distinct random ones for `power_of_two`; for `round_robin` the one
    /// whose turn it is (`turn` modulo the candidates, in name order).
    private static func sample<R: RandomNumberGenerator>(_ eligible: [RolePool.Scored],
                                                        strategy: PlacementPolicy.BalancingStrategy, turn: Int,
                                                        rng: inout R) -> [RolePool.Scored] {
        switch strategy {
        case .leastLoaded:
            return eligible
        case .roundRobin:
            guard !eligible.isEmpty else { return eligible }
            let byName = eligible.sorted { $0.worker.name < $1.worker.name }
            return [byName[turn % byName.count]]
        case .powerOfTwo:
            guard eligible.count > 2 else { return eligible }
            let first = Int.random(in: 0..<eligible.count, using: &rng)
            var second = Int.random(in: 0..<(eligible.count - 1), using: &rng)
            if second >= first { second += 1 }
            return [eligible[first], eligible[second]]
        }
    }
}

/// The roles placement gives a worker, and why any offered role was withheld (nil when none was).
public struct RoleAssignment: Sendable, Equatable {
    public var roles: [WorkerRole]
    public var note: String?

    public init(roles: [WorkerRole], note: String?) {
        self.roles = roles
        self.note = note
    }
}

/// A number for explanations: integers plainly, others with up to two decimals.
func fmt(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
    return String(format: "%.2f", value)
}
