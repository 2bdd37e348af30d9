/// The one error type of the tokenizer: a code to match on, a message for people, and the cause.
public struct TokenizationError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// `tokenizer.ggml.model` names a tokenizer other than byte-level BPE (`gpt2`).
        public static let unsupportedModel = Code("unsupported tokenizer model")
        /// `tokenizer.ggml.pre` names a pre-tokenizer this implementation does not know.
        public static let unsupportedPreTokenizer = Code("unsupported pre-tokenizer")
        /// The vocabulary, token types, merges or special-token ids are missing or inconsistent.
        public static let invalidVocabulary = Code("invalid vocabulary")
        /// A token id outside the vocabulary was given to a decoding call.
        public static let invalidTokenID = Code("invalid token id")
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
