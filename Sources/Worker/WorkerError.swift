/// The one error type of the worker module: a code to match on, a message for people, and the cause.
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A caller passed an invalid argument (bad prompt, sampling parameters, sizes).
        public static let invalidArgument = Code("invalid argument")
        /// The inference engine failed (prefill, decode, cache).
        public static let inference = Code("inference failed")
        /// The KV transfer failed (the transport's error is the cause).
        public static let transfer = Code("KV transfer failed")
        /// The machine's device profile could not be measured, read or cached.
        public static let profiling = Code("device profiling failed")
        /// The work did not finish within its deadline.
        public static let timeout = Code("timeout")
        /// The work was cancelled (by its caller or a `Cancel` request).
        public static let cancelled = Code("cancelled")
        /// The request names something this worker does not hold (a generation not waiting to move here).
        public static let notFound = Code("not found")
        /// The request conflicts with what happened already (a move decided otherwise).
        public static let conflict = Code("conflict")
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
