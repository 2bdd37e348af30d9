/// Turns a stream of token ids into text without ever emitting a broken UTF-8 sequence.
///
/// A byte-level token can end in the middle of a multi-byte character (emoji and CJK often span two or
/// three tokens). `append(_:)` returns only complete characters and holds back an incomplete tail until
/// the tokens that complete it arrive. Bytes that can never become valid UTF-8 are emitted as U+FFFD
/// right away rather than held. Call `flush()` at the end of the stream to get whatever is left.
///
/// Pieces are rendered per token, as llama.cpp's `token_to_piece`, so the stream never applies the
/// decode-time space clean-up of `Tokenizer.decode` (SmolLM2's tokenizer does not use it either).
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: Tokenizer
    /// Render control tokens (`<|im_end|>`...) as their text instead of "".
    public let renderSpecial: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
    }

    /// The text completed by `id`; "" while a character is still incomplete. Invalid ids add nothing.
    public mutating func append(_ id: Int32) -> String {
        tokenizer.appendPiece(id, renderSpecial: renderSpecial, to: &pending)
        let complete = Self.completePrefixLength(pending)
        if complete == 0 { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Everything still held back (an incomplete character becomes U+FFFD), and resets the stream.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Bytes held back waiting for the rest of a character (at most 3).
    public var pendingByteCount: Int { pending.count }

    /// Length of the prefix of `bytes` that can be emitted now: everything except a trailing sequence that
    /// is a valid start of a UTF-8 character but not yet all of it.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let count = bytes.count
        // Find the last lead byte among the final 4 bytes.
        var start = count - 1
        while start >= 0 && start >= count - 4 && bytes[start] & 0xC0 == 0x80 { start -= 1 }
        guard start >= 0 && start >= count - 4 else { return count }
        let lead = bytes[start]
        let needed: Int
        switch lead {
        case 0xC2...0xDF: needed = 2
        case 0xE0...0xEF: needed = 3
        case 0xF0...0xF4: needed = 4
        default: return count  // ASCII or a byte that cannot start a character: nothing to wait for
        }
        let have = count - start
        if have >= needed { return count }
        // The second byte of some sequences has a narrower range; a tail that already breaks it is invalid.
        if have >= 2 {
            let second = bytes[start + 1]
            let valid: Bool
            switch lead {
            case 0xE0: valid = (0xA0...0xBF).contains(second)
            case 0xED: valid = (0x80...0x9F).contains(second)
            case 0xF0: valid = (0x90...0xBF).contains(second)
            case 0xF4: valid = (0x80...0x8F).contains(second)
            default: valid = true
            }
            if !valid { return count }
        }
        return start
    }
}
