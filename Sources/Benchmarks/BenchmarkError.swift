/// The one error type of the benchmark drivers: a code to match on, a message for people, and the cause.
public struct BenchmarkError: Error, CustomStringConvertible, Sendable {
    /// What went wrong. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The arguments cannot make a benchmark (no levels, no requests, a bad URL).
        public static let invalidArgument = Code("invalid argument")
        /// A workload trace file cannot be read or has a bad line.
        public static let invalidTrace = Code("invalid trace")
        /// A server to compare with could not be started or did not become ready.
        public static let peerFailed = Code("peer failed")
        /// The server under test answered something this client cannot read.
        public static let protocolViolation = Code("protocol violation")
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
