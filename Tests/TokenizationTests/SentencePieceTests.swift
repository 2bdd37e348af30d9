import Testing
import Tokenization

/// SentencePiece (`tokenizer.ggml.model` = `llama`) on a vocabulary small enough to follow by hand; the corpus
/// tests hold it to llama.cpp on Gemma 3's real one.
@Suite("SentencePiece tokenizer")
struct SentencePieceTests {
    /// ids: 0 <unk>, 1 <s>, 2 </s>, 3 <0x41> ... bytes for 'A' and every byte of "é"; then pieces with scores.
    static func tokenizer(addSpacePrefix: Bool = true) throws -> Tokenizer {
        var tokens = ["<unk>", "<s>", "</s>"], types: [Int32] = [2, 3, 3], scores: [Float] = [0, 0, 0]
        for byte in 0..<256 {
            tokens.append("<0x" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2) + ">")
            types.append(6)
            scores.append(0)
        }
        let pieces: [(String, Float)] = [
            ("\u{2581}", -1), ("a", -2), ("b", -3), ("c", -4), ("ab", -5), ("bc", -1.5), ("\u{2581}a", -6),
            ("\u{2581}ab", -7), ("abc", -8), ("<sep>", 0),
        ]
        for (piece, score) in pieces {
            tokens.append(piece)
            types.append(piece == "<sep>" ? 3 : 1)
            scores.append(score)
        }
        return try Tokenizer(
            tokens: tokens, tokenTypes: types, scores: scores, model: "llama", pre: "default",
            addSpacePrefix: addSpacePrefix)
    }

    static func ids(_ tokenizer: Tokenizer, _ pieces: String...) -> [Int32] {
        pieces.map { tokenizer.tokenID(forText: $0)! }
    }

    @Test("the pair whose piece scores highest merges first, and a merge never makes a piece the vocabulary lacks")
    func mergesByScore() throws {
        let t = try Self.tokenizer(addSpacePrefix: false)
        // "bc" (-1.5) merges before "ab" (-5); then a + bc makes "abc" (-8), a piece.
        #expect(t.encode("abc", addSpecial: false) == Self.ids(t, "abc"))
        // "ab" + "ab": no "abab" piece, so two tokens.
        #expect(t.encode("abab", addSpecial: false) == Self.ids(t, "ab", "ab"))
        // "cb": no piece, so each character alone.
        #expect(t.encode("cb", addSpecial: false) == Self.ids(t, "c", "b"))
    }

    @Test("spaces become ▁, and add_space_prefix puts one before the text and after every special token")
    func spacePrefix() throws {
        let t = try Self.tokenizer()
        #expect(t.addSpacePrefix)
        #expect(t.encode("ab", addSpecial: false) == Self.ids(t, "\u{2581}ab"))
        #expect(t.encode("ab ab", addSpecial: false) == Self.ids(t, "\u{2581}ab", "\u{2581}ab"))
        #expect(t.encode("ab<sep>ab", addSpecial: false, parseSpecial: true) == Self.ids(t, "\u{2581}ab", "<sep>", "\u{2581}ab"))
        let plain = try Self.tokenizer(addSpacePrefix: false)
        #expect(plain.encode("ab", addSpecial: false) == Self.ids(plain, "ab"))
        // BOS is added by default for SentencePiece, and id 1 is its default.
        #expect(t.encode("ab").first == 1)
    }

    @Test("characters the vocabulary lacks fall back to their UTF-8 bytes as <0xNN> tokens")
    func byteFallback() throws {
        let t = try Self.tokenizer(addSpacePrefix: false)
        #expect(t.encode("é", addSpecial: false) == Self.ids(t, "<0xC3>", "<0xA9>"))
        #expect(t.decode(t.encode("aé b", addSpecial: false)) == "aé b")
    }

    @Test("decoding turns ▁ back into spaces and drops the space add_space_prefix added, as llama_detokenize")
    func decoding() throws {
        let t = try Self.tokenizer()
        let ids = t.encode("ab ab", addSpecial: false)
        #expect(t.decode(ids) == "ab ab")
        #expect(t.piece(ids[0]) == Array(" ab".utf8))
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
