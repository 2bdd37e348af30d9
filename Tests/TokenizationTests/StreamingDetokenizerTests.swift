import Testing
import Tokenization

@Suite("Streaming detokenizer")
struct StreamingDetokenizerTests {
    @Test("characters split across tokens are emitted only once complete")
    func holdsBackIncompleteCharacters() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let text = "Hello 👋 world 🌍! 你好 👨‍👩‍👧‍👦 🇺🇸 done"
        let ids = tokenizer.encode(text)
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        var outputs: [String] = []
        for id in ids { outputs.append(stream.append(id)) }
        outputs.append(stream.flush())
        #expect(outputs.joined() == text)
        #expect(outputs.allSatisfy { !$0.unicodeScalars.contains("\u{FFFD}") })
        // Some token ended inside a character, so something was held back at least once.
        #expect(outputs.dropLast().contains(""))
    }

    @Test("a held-back tail is released by the token that completes it")
    func pendingBytes() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("🌍")
        #expect(ids.count >= 2)
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        for id in ids.dropLast() { #expect(stream.append(id) == "") }
        #expect(stream.pendingByteCount > 0)
        #expect(stream.append(ids.last!) == "🌍")
        #expect(stream.pendingByteCount == 0)
    }

    @Test("flush turns an incomplete character into U+FFFD and empties the stream")
    func flushIncomplete() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("🌍")
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        #expect(stream.append(ids[0]) == "")
        #expect(stream.flush() == "\u{FFFD}")
        #expect(stream.flush() == "")
    }

    @Test("bytes that can never complete a character are not held back")
    func invalidBytesPassThrough() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        // Token 225 is the lone continuation byte 0x87.
        #expect(tokenizer.tokenBytes(225) == [0x87])
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        #expect(stream.append(225) == "\u{FFFD}")
        #expect(stream.pendingByteCount == 0)
    }

    @Test("control tokens are skipped unless rendered")
    func controlTokens() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        var plain = StreamingDetokenizer(tokenizer: tokenizer)
        #expect(plain.append(2) == "")
        var rendered = StreamingDetokenizer(tokenizer: tokenizer, renderSpecial: true)
        #expect(rendered.append(2) == "<|im_end|>")
    }
}
