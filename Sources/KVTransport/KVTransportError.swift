import RPC

/// The one error type of the KV transport: a code to match on, a message for people, and the cause.
public struct KVTransportError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The peers' compatibility identities differ (model, tokenizer, KV layout or protocol version).
        public static let incompatible = Code("incompatible peer")
        /// A chunk's bytes do not match its CRC32C.
        public static let checksumMismatch = Code("checksum mismatch")
        /// The peer sent something out of order, malformed, or the stream ended early.
        public static let protocolViolation = Code("protocol violation")
        /// The stream or connection ended before the transfer completed.
        public static let truncated = Code("truncated transfer")
        /// A network wait exceeded its timeout.
        public static let timeout = Code("timeout")
        /// The transfer was cancelled by either end.
        public static let cancelled = Code("cancelled")
        /// The receiver refused the transfer for lack of room or another local reason.
        public static let refused = Code("refused")
        /// Connecting, TLS or a socket operation failed.
        public static let connectionFailed = Code("connection failed")
        /// Certificates or keys could not be created, read or used.
        public static let certificate = Code("certificate error")
        /// Shared memory could not be created, mapped or opened.
        public static let sharedMemory = Code("shared memory error")
        /// An RDMA (libibverbs) call failed or no device is usable.
        public static let rdma = Code("RDMA error")
        /// A caller passed an invalid argument or used an API out of order.
        public static let invalidArgument = Code("invalid argument")
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

extension KVTransportError {
    /// The KV transport's view of a failure of the RPC layer beneath it.
    public init(rpc error: RPCError) {
        let code: Code = switch error.code {
        case .connectionFailed: .connectionFailed
        case .timeout: .timeout
        case .truncated: .truncated
        case .protocolViolation: .protocolViolation
        case .cancelled: .cancelled
        case .certificate: .certificate
        default: .invalidArgument
        }
        self.init(code, error.message, cause: error)
    }
}
