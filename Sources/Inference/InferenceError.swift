/// The one error type of the inference core: a code to match on, a message for people, and the cause.
public struct InferenceError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let invalidModel = Code("invalid model")
        public static let unsupportedModel = Code("unsupported model")
        public static let invalidArgument = Code("invalid argument")
        public static let kvCacheFull = Code("KV cache full")
        public static let unknownSequence = Code("unknown sequence")
        public static let layoutMismatch = Code("KV layout mismatch")
        public static let contextOverflow = Code("context overflow")
    }

    public let code: Code
    public let message: String
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(code): \(message) (caused by: \(cause))" }
        return "\(code): \(message)"
    }
}
