import Foundation

/// Everything `Placement.choose` decided and why: the chosen workers, the admission answer, every
/// candidate's score or exclusion reasons, and every pair compared. `explainText`/`explainJSON` render it.
public struct Decision: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Equatable, Codable {
        /// Prefill on one worker, KV handed to a decode worker.
        case disaggregated
        /// The decode worker runs the whole request.
        case decodeOnly = "decode_only"
    }

    /// A candidate's normalized features and score. Features are in 0...1: compute and bandwidth relative
    /// to the best eligible candidate for the role, load as the fuller of queue and KV cache.
    public struct Score: Sendable, Equatable, Codable {
        public var compute: Double
        public var bandwidth: Double
        public var load: Double
        public var score: Double
    }

    /// One worker considered for one role.
    public struct Candidate: Sendable, Equatable, Codable {
        public enum Outcome: String, Sendable, Equatable, Codable {
            /// Picked for this role.
            case chosen
            /// Eligible and compared, not picked.
            case ranked
            /// Eligible, but `power_of_two` did not sample it this time, or it was not its turn (`round_robin`).
            case notSampled = "not_sampled"
            /// Would be eligible, but is over a load limit or missing an SLO right now (counts toward 429).
            case overloaded
            /// Not allowed for this role by the policy, or lost (counts toward 503).
            case excluded
        }

        public var worker: String
        public var role: WorkerRole
        /// What the worker's box is (`DeviceProfile.summary`): ISA path, cores, GFLOP/s, GB/s.
        public var device: String
        public var outcome: Outcome
        /// Why it was excluded or overloaded; empty otherwise.
        public var reasons: [String]
        /// Present for eligible candidates.
        public var score: Score?
        /// 1-based rank by role score among eligible candidates.
        public var rank: Int?
    }

    /// One prefill/decode combination compared: `score = prefill score + decode score − link_weight·link cost`.
    public struct PairScore: Sendable, Equatable, Codable {
        public var prefill: String?
        public var decode: String
        public var link: LinkKind?
        public var linkCost: Double
        public var score: Double

        enum CodingKeys: String, CodingKey {
            case prefill, decode, link, linkCost = "link_cost", score
        }
    }

    public var promptTokens: Int
    public var mode: Mode
    /// Why this mode (the threshold compared, or the fallback taken).
    public var modeReason: String
    public var strategy: PlacementPolicy.BalancingStrategy
    /// Chosen prefill worker; nil in decode-only mode or when not admitted.
    public var prefill: String?
    /// Chosen decode worker; nil when not admitted.
    public var decode: String?
    public var admission: AdmissionDecision
    /// Prefill candidates (disaggregated mode only), then decode candidates, each by rank then name.
    public var candidates: [Candidate]
    /// Pairs compared, best first: all of them when there are at most 64 prefill × decode pairs. Beyond that,
    /// `least_loaded` does not score every pair: then the best pair of each prefill candidate (decode-only: each
    /// decode candidate), best first, at most 64.
    public var pairs: [PairScore]

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", mode, modeReason = "mode_reason", strategy, prefill, decode
        case admission, candidates, pairs
    }
}

// Explicit encoders so absent values are `null` rather than missing keys: a stable JSON shape for tools.

extension Decision.Candidate {
    enum CodingKeys: String, CodingKey { case worker, role, device, outcome, reasons, score, rank }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(worker, forKey: .worker)
        try c.encode(role, forKey: .role)
        try c.encode(device, forKey: .device)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(reasons, forKey: .reasons)
        try c.encode(score, forKey: .score)
        try c.encode(rank, forKey: .rank)
    }
}

extension Decision.PairScore {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prefill, forKey: .prefill)
        try c.encode(decode, forKey: .decode)
        try c.encode(link, forKey: .link)
        try c.encode(linkCost, forKey: .linkCost)
        try c.encode(score, forKey: .score)
    }
}

extension Decision {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(mode, forKey: .mode)
        try c.encode(modeReason, forKey: .modeReason)
        try c.encode(strategy, forKey: .strategy)
        try c.encode(prefill, forKey: .prefill)
        try c.encode(decode, forKey: .decode)
        try c.encode(admission, forKey: .admission)
        try c.encode(candidates, forKey: .candidates)
        try c.encode(pairs, forKey: .pairs)
    }
}
