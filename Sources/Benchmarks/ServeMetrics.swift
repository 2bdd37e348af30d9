import Foundation

/// Percentiles of one measure, in milliseconds.
///
/// Linear interpolation between the two nearest ranks (numpy's default, which vLLM's and AIPerf's
/// benchmarks use), so that figures compare with theirs: p50 of [10, 20] is 15.
public struct Percentiles: Codable, Sendable, Equatable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var mean: Double

    public init(_ values: [Double]) {
        let sorted = values.sorted()
        p50 = Self.percentile(sorted, 0.5)
        p90 = Self.percentile(sorted, 0.9)
        p99 = Self.percentile(sorted, 0.99)
        mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
    }

    /// The `q`-quantile (0...1) of ascending `sorted` by linear interpolation; 0 for no values.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard let first = sorted.first else { return 0 }
        guard sorted.count > 1 else { return first }
        let rank = min(max(q, 0), 1) * Double(sorted.count - 1)
        let below = Int(rank.rounded(.down))
        let above = min(below + 1, sorted.count - 1)
        return sorted[below] + (sorted[above] - sorted[below]) * (rank - Double(below))
    }
}

/// A service-level objective: the bounds a request must meet to count towards goodput.
///
/// `ttft` bounds time to first token; `itl` bounds the request's mean inter-token latency after the first
/// token, (e2e − ttft) / (output tokens − 1), which DistServe calls TPOT and AIPerf calls inter-token latency;
/// `e2e` bounds the whole request. A request with one output token has no inter-token latency and meets any
/// `itl` bound. Goodput is then the requests per second that succeeded and met every bound (vLLM's
/// `request_goodput`, AIPerf's `--goodput`).
public struct ServeSLO: Codable, Sendable, Equatable, CustomStringConvertible {
    public var ttftMs: Double?
    public var itlMs: Double?
    public var e2eMs: Double?

    public init(ttftMs: Double? = nil, itlMs: Double? = nil, e2eMs: Double? = nil) {
        self.ttftMs = ttftMs
        self.itlMs = itlMs
        self.e2eMs = e2eMs
    }

    enum CodingKeys: String, CodingKey {
        case ttftMs = "ttft_ms", itlMs = "itl_ms", e2eMs = "e2e_ms"
    }

    /// Parses `ttft=2s,itl=100ms` (keys ttft, itl, e2e; units ms or s, required).
    public init(parsing text: String) throws(BenchmarkError) {
        var slo = ServeSLO()
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw BenchmarkError(.invalidArgument, "--slo takes KEY=VALUE pairs separated by commas (ttft=2s,itl=100ms), got \"\(text)\"")
        }
        for part in parts {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else {
                throw BenchmarkError(.invalidArgument, "--slo: \"\(part)\" is not KEY=VALUE (e.g. ttft=2s)")
            }
            let value = pair[1]
            let milliseconds: Double
            if value.hasSuffix("ms"), let number = Double(value.dropLast(2)) {
                milliseconds = number
            } else if value.hasSuffix("s"), let number = Double(value.dropLast()) {
                milliseconds = number * 1000
            } else {
                throw BenchmarkError(.invalidArgument, "--slo: \"\(part)\" needs a number with a unit, ms or s (e.g. \(pair[0])=100ms)")
            }
            guard milliseconds > 0, milliseconds.isFinite else {
                throw BenchmarkError(.invalidArgument, "--slo: \"\(part)\" must be a positive time")
            }
            switch pair[0] {
            case "ttft": slo.ttftMs = milliseconds
            case "itl": slo.itlMs = milliseconds
            case "e2e": slo.e2eMs = milliseconds
            default:
                throw BenchmarkError(.invalidArgument, "--slo: unknown key \"\(pair[0])\" (expected ttft, itl or e2e)")
            }
        }
        self = slo
    }

    public var description: String {
        [("ttft", ttftMs), ("itl", itlMs), ("e2e", e2eMs)].compactMap { key, value in
            value.map { "\(key)=\(Self.format($0))" }
        }.joined(separator: ",")
    }

    private static func format(_ milliseconds: Double) -> String {
        milliseconds >= 1000 && (milliseconds / 1000).rounded() == milliseconds / 1000
            ? "\(Int(milliseconds / 1000))s" : (milliseconds.rounded() == milliseconds ? "\(Int(milliseconds))ms" : "\(milliseconds)ms")
    }

    /// Whether `record` succeeded and met every bound.
    public func isMet(by record: RequestRecord) -> Bool {
        guard record.error == nil, let ttft = record.ttftMs, let e2e = record.e2eMs else { return false }
        if let ttftMs, ttft > ttftMs { return false }
        if let e2eMs, e2e > e2eMs { return false }
        if let itlMs, let tpot = record.tpotMs, tpot > itlMs { return false }
        return true
    }
}

/// What one request did, as the benchmark saw it from the client side. Times are milliseconds; `sentMs` is
/// counted from the level's start.
public struct RequestRecord: Codable, Sendable, Equatable {
    public var index: Int
    public var conversation: String?
    public var turn: Int?
    /// When the workload scheduled it (open-loop runs only).
    public var scheduledMs: Double?
    /// When it was actually sent (after its conversation's previous turn, in a closed loop after a free client).
    public var sentMs: Double
    public var ttftMs: Double?
    public var e2eMs: Double?
    /// Gaps between successive streamed chunks that carried text, after the first.
    public var itlMs: [Double]
    public var promptTokens: Int
    public var completionTokens: Int
    /// Why it failed (`http 429`, `transport`, …); nil when it succeeded.
    public var error: String?
    /// What the failure said: the server's error body, or the transport's error (the first 300 bytes).
    public var errorMessage: String?
    /// KV bytes a Baton cluster moved from prefill to decode worker for it (0: none moved), and the bytes of the
    /// prompt positions the decode worker's cache held instead; nil from a server that does not say.
    public var kvBytes: Int?
    public var kvBytesNotShipped: Int?

    public init(
        index: Int, conversation: String? = nil, turn: Int? = nil, scheduledMs: Double? = nil, sentMs: Double,
        ttftMs: Double?, e2eMs: Double?, itlMs: [Double] = [], promptTokens: Int = 0, completionTokens: Int = 0,
        error: String? = nil, errorMessage: String? = nil, kvBytes: Int? = nil, kvBytesNotShipped: Int? = nil
    ) {
        self.kvBytes = kvBytes
        self.kvBytesNotShipped = kvBytesNotShipped
        self.index = index
        self.conversation = conversation
        self.turn = turn
        self.scheduledMs = scheduledMs
        self.sentMs = sentMs
        self.ttftMs = ttftMs
        self.e2eMs = e2eMs
        self.itlMs = itlMs
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.error = error
        self.errorMessage = errorMessage
    }

    /// Mean time per output token after the first: (e2e − ttft) / (tokens − 1); nil below two tokens.
    public var tpotMs: Double? {
        guard let ttftMs, let e2eMs, completionTokens > 1 else { return nil }
        return (e2eMs - ttftMs) / Double(completionTokens - 1)
    }

    enum CodingKeys: String, CodingKey {
        case index, conversation, turn, scheduledMs = "scheduled_ms", sentMs = "sent_ms", ttftMs = "ttft_ms", e2eMs = "e2e_ms"
        case itlMs = "itl_ms", promptTokens = "prompt_tokens", completionTokens = "completion_tokens", error
        case errorMessage = "error_message", kvBytes = "kv_bytes", kvBytesNotShipped = "kv_bytes_not_shipped"
    }
}

/// The figures of one level (one concurrency, one request rate or one trace replay), computed from its records.
public struct LevelSummary: Codable, Sendable, Equatable {
    public var requests: Int
    public var succeeded: Int
    /// Failures by reason (HTTP status or transport error).
    public var errors: [String: Int]
    public var ttftMs: Percentiles
    /// Every inter-chunk gap of every successful request (token level, as vLLM reports ITL).
    public var itlMs: Percentiles
    /// One value per request of two or more tokens (see ``RequestRecord/tpotMs``).
    public var tpotMs: Percentiles
    public var e2eMs: Percentiles
    /// From the first send to the last answer.
    public var durationSeconds: Double
    public var outputTokensPerSecond: Double
    public var requestsPerSecond: Double
    public var promptTokensMean: Double
    public var completionTokensMean: Double
    /// Successful requests per second that met the SLO; nil without one.
    public var goodput: Double?
    /// The share of all requests (failed ones included) that met the SLO; nil without one.
    public var sloAttainment: Double?
    /// Mean KV bytes moved between a Baton cluster's workers per successful request, and mean bytes the decode
    /// workers' caches held instead; nil when the server does not say.
    public var kvBytesPerRequest: Double?
    public var kvBytesNotShippedPerRequest: Double?
    /// The same figures turn by turn, for a workload of conversations; nil otherwise.
    public var turns: [TurnSummary]?

    /// One turn's requests of every conversation in a level (turn 0: the first).
    public struct TurnSummary: Codable, Sendable, Equatable {
        public var turn: Int
        public var requests: Int
        public var succeeded: Int
        public var ttftMs: Percentiles
        public var promptTokensMean: Double
        /// This turn's successful requests per second of the level that met the SLO, and their share of the turn's
        /// requests; nil without an SLO.
        public var goodput: Double?
        public var sloAttainment: Double?
        public var kvBytesPerRequest: Double?
        public var kvBytesNotShippedPerRequest: Double?
        /// Requests whose KV moved (the rest ran on the decode worker alone, shipping nothing), and the mean bytes
        /// each of them shipped.
        public var transfers: Int?
        public var kvBytesPerTransfer: Double?

        enum CodingKeys: String, CodingKey {
            case turn, requests, succeeded, ttftMs = "ttft_ms", promptTokensMean = "prompt_tokens_mean", goodput
            case sloAttainment = "slo_attainment", kvBytesPerRequest = "kv_bytes_per_request"
            case kvBytesNotShippedPerRequest = "kv_bytes_not_shipped_per_request", transfers
            case kvBytesPerTransfer = "kv_bytes_per_transfer"
        }
    }

    /// Mean of `value` over the successful records that report it; nil when none does.
    static func mean(_ records: [RequestRecord], _ value: (RequestRecord) -> Int?) -> Double? {
        let values = records.filter { $0.error == nil }.compactMap(value)
        return values.isEmpty ? nil : Double(values.reduce(0, +)) / Double(values.count)
    }

    public init(records: [RequestRecord], durationSeconds: Double, slo: ServeSLO?) {
        let ok = records.filter { $0.error == nil }
        let seconds = max(durationSeconds, 1e-9)
        requests = records.count
        succeeded = ok.count
        var errors: [String: Int] = [:]
        for record in records { if let error = record.error { errors[error, default: 0] += 1 } }
        self.errors = errors
        ttftMs = Percentiles(ok.compactMap(\.ttftMs))
        itlMs = Percentiles(ok.flatMap(\.itlMs))
        tpotMs = Percentiles(ok.compactMap(\.tpotMs))
        e2eMs = Percentiles(ok.compactMap(\.e2eMs))
        self.durationSeconds = durationSeconds
        let outputTokens = ok.reduce(0) { $0 + $1.completionTokens }
        outputTokensPerSecond = Double(outputTokens) / seconds
        requestsPerSecond = Double(ok.count) / seconds
        promptTokensMean = ok.isEmpty ? 0 : Double(ok.reduce(0) { $0 + $1.promptTokens }) / Double(ok.count)
        completionTokensMean = ok.isEmpty ? 0 : Double(outputTokens) / Double(ok.count)
        if let slo {
            let good = records.filter { slo.isMet(by: $0) }.count
            goodput = Double(good) / seconds
            sloAttainment = records.isEmpty ? 0 : Double(good) / Double(records.count)
        } else {
            goodput = nil
            sloAttainment = nil
        }
        kvBytesPerRequest = Self.mean(records, \.kvBytes)
        kvBytesNotShippedPerRequest = Self.mean(records, \.kvBytesNotShipped)
        let byTurn = Dictionary(grouping: records.filter { $0.turn != nil }) { $0.turn! }
        turns = byTurn.isEmpty ? nil : byTurn.keys.sorted().map { turn in
            let all = byTurn[turn]!
            let ok = all.filter { $0.error == nil }
            let good = slo.map { slo in all.filter { slo.isMet(by: $0) }.count }
            let moved = ok.compactMap(\.kvBytes).filter { $0 > 0 }
            return TurnSummary(
                turn: turn, requests: all.count, succeeded: ok.count, ttftMs: Percentiles(ok.compactMap(\.ttftMs)),
                promptTokensMean: ok.isEmpty ? 0 : Double(ok.reduce(0) { $0 + $1.promptTokens }) / Double(ok.count),
                goodput: good.map { Double($0) / seconds }, sloAttainment: good.map { Double($0) / Double(all.count) },
                kvBytesPerRequest: Self.mean(all, \.kvBytes), kvBytesNotShippedPerRequest: Self.mean(all, \.kvBytesNotShipped),
                transfers: ok.contains { $0.kvBytes != nil } ? moved.count : nil,
                kvBytesPerTransfer: moved.isEmpty ? nil : Double(moved.reduce(0, +)) / Double(moved.count))
        }
    }

    enum CodingKeys: String, CodingKey {
        case requests, succeeded, errors, ttftMs = "ttft_ms", itlMs = "itl_ms", tpotMs = "tpot_ms", e2eMs = "e2e_ms"
        case durationSeconds = "duration_s", outputTokensPerSecond = "output_tokens_per_second"
        case requestsPerSecond = "requests_per_second", promptTokensMean = "prompt_tokens_mean"
        case completionTokensMean = "completion_tokens_mean", goodput, sloAttainment = "slo_attainment"
        case kvBytesPerRequest = "kv_bytes_per_request", kvBytesNotShippedPerRequest = "kv_bytes_not_shipped_per_request"
        case turns
    }
}
