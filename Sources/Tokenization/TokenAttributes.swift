/// What kind of token a vocabulary entry is: llama.cpp's `llama_token_attr` bits, derived from GGUF's
/// `tokenizer.ggml.token_type` and then adjusted by llama.cpp's load-time rules (see `Tokenizer`).
public struct TokenAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unknown = TokenAttributes(rawValue: 1 << 0)
    public static let unused = TokenAttributes(rawValue: 1 << 1)
    public static let normal = TokenAttributes(rawValue: 1 << 2)
    /// Control tokens (`<|im_start|>`...): matched in text only with `parseSpecial`, decoded as "" unless
    /// `renderSpecial`.
    public static let control = TokenAttributes(rawValue: 1 << 3)
    /// User-defined tokens: always matched in text before BPE, always rendered.
    public static let userDefined = TokenAttributes(rawValue: 1 << 4)
    public static let byte = TokenAttributes(rawValue: 1 << 5)

    /// The attributes of a GGUF token type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte; 0 and anything else are "undefined" (no bits).
    public init(ggufTokenType type: Int32) {
        switch type {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = []
        }
    }
}
