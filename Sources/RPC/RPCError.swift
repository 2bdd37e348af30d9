/// The one error type of the node-to-node RPC layer: a code to match on, a message for people, and the cause.
public struct RPCError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Connecting, TLS or a socket operation failed.
        public static let connectionFailed = Code("connection failed")
        /// A network wait exceeded its timeout.
        public static let timeout = Code("timeout")
        /// The stream or connection ended before the exchange completed (or the peer reset it).
        public static let truncated = Code("truncated")
        /// The peer sent something malformed or too large.
        public static let protocolViolation = Code("protocol violation")
        /// The stream was cancelled locally.
        public static let cancelled = Code("cancelled")
        /// Certificates or keys could not be created, read or used.
        public static let certificate = Code("certificate error")
        /// A caller passed an invalid argument or used an API out of order.
        public static let invalidArgument = Code("invalid argument")
        /// The peer's certificate does not allow what was asked (a node acting outside its name or roles), or
        /// the server reached is not the node the client meant.
        public static let forbidden = Code("forbidden")
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
