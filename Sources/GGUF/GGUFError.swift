/// The one error type of the GGUF module: a code to match on, a message for people, the byte offset in the
/// file where the problem was found (when there is one), and the underlying cause.
///
/// Messages name the file; parse errors also name the offset, e.g.
/// `model.gguf, offset 24: tensor count 4294967296 cannot fit in the 100 bytes left in the file`.
public struct GGUFError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The file does not exist.
        public static let fileNotFound = Code("file not found")
        /// The file exists but could not be opened, inspected or mapped.
        public static let io = Code("I/O error")
        /// The file does not start with `GGUF`.
        public static let badMagic = Code("bad magic")
        /// GGUF version other than 2 or 3.
        public static let unsupportedVersion = Code("unsupported version")
        /// The file ends in the middle of a field.
        public static let truncated = Code("truncated")
        /// A count, length or nesting depth that the file cannot possibly hold or the reader refuses.
        public static let limitExceeded = Code("limit exceeded")
        /// A field whose value is impossible (zero dimension, misaligned offset, duplicate key...).
        public static let invalidValue = Code("invalid value")
        /// A tensor whose type id ggml does not define (so its size is unknown).
        public static let unsupportedTensorType = Code("unsupported tensor type")
        /// Two tensors whose data ranges overlap.
        public static let overlappingTensors = Code("overlapping tensors")
        /// A metadata key that a typed accessor asked for is absent.
        public static let missingKey = Code("missing key")
        /// A metadata value of another type than a typed accessor asked for.
        public static let typeMismatch = Code("type mismatch")
    }

    public let code: Code
    public let message: String
    /// Byte offset in the file of the field at fault, when the error comes from parsing.
    public let offset: Int?
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, offset: Int? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(code): \(message) (caused by: \(cause))" }
        return "\(code): \(message)"
    }
}
