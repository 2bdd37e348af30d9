/// The one error type of the cluster's control plane: a code to match on, a message for people, the cause.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Nothing can serve the request: no eligible worker, or a peer cannot be reached (HTTP 503).
        public static let unavailable = Code("unavailable")
        /// Workers exist but are at capacity: retry after `retryAfterSeconds` (HTTP 429).
        public static let overloaded = Code("overloaded")
        /// The peer refused the request as invalid (HTTP 4xx other than 429).
        public static let rejected = Code("rejected")
        /// The peer answered something this build cannot read.
        public static let protocolViolation = Code("protocol violation")
        /// A network wait exceeded its timeout.
        public static let timeout = Code("timeout")
        /// A caller passed an invalid argument.
        public static let invalidArgument = Code("invalid argument")
        /// The caller's certificate does not allow the request (HTTP 403): acting under another node's name, or
        /// in a role the certificate does not list.
        public static let forbidden = Code("forbidden")
        /// The peer failed while handling the request (HTTP 5xx other than 503).
        public static let internalError = Code("internal error")
    }

    public let code: Code
    public let message: String
    public let cause: (any Error & Sendable)?
    /// When to try again (set with `.overloaded`).
    public let retryAfterSeconds: Double?

    public init(_ code: Code, _ message: String, retryAfterSeconds: Double? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(code): \(message) (caused by: \(cause))" }
        return "\(code): \(message)"
    }
}
