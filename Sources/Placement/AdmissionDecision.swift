import Foundation

/// The workers that serve one request. `prefill` is nil when the decode worker runs the whole request.
public struct WorkerPair: Sendable, Equatable, Codable {
    public var prefill: String?
    public var decode: String
    /// nil when there is no hand-off (decode-only).
    public var link: LinkKind?

    public init(prefill: String?, decode: String, link: LinkKind?) {
        self.prefill = prefill
        self.decode = decode
        self.link = link
    }
}

/// Whether a request may go ahead, and if not which HTTP answer it gets.
public enum AdmissionDecision: Sendable, Equatable {
    /// Serve it on these workers.
    case admit(WorkerPair)
    /// Every candidate for a role is overloaded or missing its SLO: 429 with `Retry-After` (seconds).
    case reject(reason: String, retryAfter: TimeInterval)
    /// No worker can serve the role at all (none registered, none eligible, all lost): 503.
    case unavailable(reason: String)

    /// 200, 429 or 503.
    public var httpStatus: Int {
        switch self {
        case .admit: 200
        case .reject: 429
        case .unavailable: 503
        }
    }
}

extension AdmissionDecision: Codable {
    enum CodingKeys: String, CodingKey {
        case result, pair, reason, retryAfterSeconds = "retry_after_seconds", httpStatus = "http_status"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .result) {
        case "admit": self = .admit(try c.decode(WorkerPair.self, forKey: .pair))
        case "reject":
            self = .reject(reason: try c.decode(String.self, forKey: .reason),
                           retryAfter: try c.decode(Double.self, forKey: .retryAfterSeconds))
        case "unavailable": self = .unavailable(reason: try c.decode(String.self, forKey: .reason))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .result, in: c, debugDescription: "unknown result '\(other)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(httpStatus, forKey: .httpStatus)
        switch self {
        case .admit(let pair):
            try c.encode("admit", forKey: .result)
            try c.encode(pair, forKey: .pair)
        case .reject(let reason, let retryAfter):
            try c.encode("reject", forKey: .result)
            try c.encode(reason, forKey: .reason)
            try c.encode(retryAfter, forKey: .retryAfterSeconds)
        case .unavailable(let reason):
            try c.encode("unavailable", forKey: .result)
            try c.encode(reason, forKey: .reason)
        }
    }
}

// Explicit encoder so an absent prefill or link is `null`, not a missing key.
extension WorkerPair {
    enum CodingKeys: String, CodingKey { case prefill, decode, link }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prefill, forKey: .prefill)
        try c.encode(decode, forKey: .decode)
        try c.encode(link, forKey: .link)
    }
}
