/// The one error type of a generation's contract: what a backend refuses or fails with, a code to match on,
/// a message for people, the parameter at fault, and the cause. Only the router turns it into HTTP (OpenAI error
/// JSON with the status each code maps to); the CLI prints it.
public struct GenerationError: Error, CustomStringConvertible, Sendable {
    /// What went wrong. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A request field is out of range or malformed; `param` names it.
        public static let invalidArgument = Code("invalid_argument")
        /// The prompt, or prompt plus `max_tokens`, does not fit the context.
        public static let contextLengthExceeded = Code("context_length_exceeded")
        /// At capacity: retry after `retryAfterSeconds`.
        public static let overloaded = Code("overloaded")
        /// Nothing can serve the request now (no worker, shutting down).
        public static let unavailable = Code("unavailable")
        /// A bound passed before the generation finished.
        public static let timeout = Code("timeout")
        /// The generation was cancelled (the consumer went away, or a `Cancel` arrived).
        public static let cancelled = Code("cancelled")
        /// A worker or engine failed mid-way.
        public static let failed = Code("failed")
        /// The prompt's KV did not reach the decode side intact (the transport's error is the message).
        public static let kvTransferFailed = Code("kv_transfer_failed")
    }

    public let code: Code
    public let message: String
    /// The request parameter at fault (OpenAI's `error.param`), when one is.
    public let param: String?
    /// For `.overloaded`: seconds to wait before retrying.
    public let retryAfterSeconds: Int?
    public let cause: (any Error & Sendable)?

    public init(
        _ code: Code, _ message: String, param: String? = nil, retryAfterSeconds: Int? = nil,
        cause: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.param = param
        self.retryAfterSeconds = retryAfterSeconds
        self.cause = cause
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let param { text += " (param: \(param))" }
        if let cause { text += " (caused by: \(cause))" }
        return text
    }
}
