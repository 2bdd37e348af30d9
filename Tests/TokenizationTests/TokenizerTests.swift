import GGUF
import Testing
import Tokenization

@Suite("Tokenizer on the default model")
struct DefaultModelTokenizerTests {
    @Test("SmolLM2's settings are read from the GGUF file")
    func settings() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        #expect(tokenizer.vocabularySize == 49152)
        #expect(tokenizer.model == "gpt2")
        #expect(tokenizer.pre == "smollm")
        #expect(tokenizer.bosID == 1)
        #expect(tokenizer.eosID == 2)
        // llama.cpp picks <|endoftext|> as end of turn for SmolLM2 (llama_vocab_eot == 0).
        #expect(tokenizer.eotID == 0)
        #expect(tokenizer.addBOS == false)
        #expect(tokenizer.addEOS == false)
    }

    @Test("end of generation is exactly llama.cpp's set: <|endoftext|>, <|im_end|> and <reponame>")
    func endOfGeneration() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        #expect(tokenizer.endOfGenerationTokens == [0, 2, 4])
        #expect(tokenizer.isEndOfGeneration(2))
        #expect(!tokenizer.isEndOfGeneration(1))
        #expect(!tokenizer.isEndOfGeneration(905))
        #expect(!tokenizer.isEndOfGeneration(-1))
    }

    @Test("control-token text is one token only when special parsing is asked for")
    func specialParsing() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let text = "<|im_start|>user\nhi<|im_end|>"
        let parsed = tokenizer.encode(text, parseSpecial: true)
        #expect(parsed.first == 1)
        #expect(parsed.last == 2)
        let literal = tokenizer.encode(text, parseSpecial: false)
        #expect(!literal.contains(1) && !literal.contains(2))
        #expect(tokenizer.decode(literal) == text)
    }

    @Test("control tokens decode to nothing unless rendered")
    func renderSpecial() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("<|im_start|>assistant<|im_end|>", parseSpecial: true)
        #expect(tokenizer.decode(ids) == "assistant")
        #expect(tokenizer.decode(ids, renderSpecial: true) == "<|im_start|>assistant<|im_end|>")
        #expect(tokenizer.piece(2).isEmpty)
        #expect(tokenizer.tokenBytes(2) == Array("<|im_end|>".utf8))
    }

    @Test("addSpecial adds nothing because SmolLM2 asks for no BOS")
    func noBOS() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        #expect(tokenizer.encode("Hello", addSpecial: true) == tokenizer.encode("Hello", addSpecial: false))
        #expect(tokenizer.encode("", addSpecial: true).isEmpty)
    }

    @Test("a vocabulary entry is its GPT-2 spelling; its bytes are the raw text")
    func spellingAndBytes() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        #expect(tokenizer.encode("Hello world") == [19556, 905])
        #expect(tokenizer.tokenText(905) == "Ġworld")
        #expect(tokenizer.tokenBytes(905) == Array(" world".utf8))
        #expect(tokenizer.tokenID(forText: "Ġworld") == 905)
        #expect(tokenizer.tokenText(49152).isEmpty)
        #expect(tokenizer.tokenBytes(-3).isEmpty)
    }

    @Test("every digit is its own token under the smollm pre-tokenizer")
    func digits() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("x 2024")
        #expect(ids.count == 6)
        #expect(tokenizer.decode(Array(ids.suffix(4))) == "2024")
    }

    @Test("validate names the first id outside the vocabulary")
    func validate() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        try tokenizer.validate([0, 1, 49151])
        #expect(throws: TokenizationError.self) { try tokenizer.validate([5, 49152]) }
        do {
            try tokenizer.validate([5, -1, 49152])
        } catch {
            #expect(error.code == .invalidTokenID)
            #expect(error.message.contains("-1") && error.message.contains("position 1"))
        }
        // Decoding ignores invalid ids rather than trapping.
        #expect(tokenizer.decode([19556, 99999, 905]) == "Hello world")
    }

    @Test("a character cut in half decodes to U+FFFD, while its raw bytes stay available")
    func partialCharacter() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("👋")
        #expect(ids.count > 1)
        let head = Array(ids.dropLast())
        #expect(tokenizer.decode(head).unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
        #expect(tokenizer.decodeBytes(head) + tokenizer.decodeBytes([ids.last!]) == Array("👋".utf8))
    }
}

@Suite("Tokenizer construction and llama.cpp's load-time rules")
struct TokenizerConstructionTests {
    @Test("only byte-level BPE and SentencePiece are accepted")
    func unsupportedModel() {
        let vocabulary = TinyVocabulary()
        #expect {
            try Tokenizer(tokens: vocabulary.tokens, merges: [], model: "t5", pre: "smollm")
        } throws: { error in
            (error as? TokenizationError)?.code == .unsupportedModel
        }
    }

    @Test("an unknown pre-tokenizer is rejected by name")
    func unsupportedPre() {
        let vocabulary = TinyVocabulary()
        do {
            _ = try Tokenizer(tokens: vocabulary.tokens, merges: [], pre: "mystery-pre")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .unsupportedPreTokenizer)
            #expect(error.message.contains("mystery-pre"))
            #expect("\(error)".hasPrefix("unsupported pre-tokenizer: pre-tokenizer 'mystery-pre'"))
        }
    }

    @Test("duplicate tokens, short token types and an empty vocabulary are invalid")
    func invalidVocabularies() {
        let vocabulary = TinyVocabulary(extra: [("ab", 1), ("ab", 1)])
        #expect(throws: TokenizationError.self) {
            try Tokenizer(tokens: vocabulary.tokens, merges: [], pre: "smollm")
        }
        let short = TinyVocabulary()
        #expect(throws: TokenizationError.self) {
            try Tokenizer(tokens: short.tokens, tokenTypes: [1, 1], merges: [], pre: "smollm")
        }
        #expect(throws: TokenizationError.self) {
            try Tokenizer(tokens: [], merges: [], pre: "smollm")
        }
        // add_bos_token with no usable BOS id (and llama.cpp's default id 11 past the end).
        #expect(throws: TokenizationError.self) {
            try Tokenizer(tokens: ["a", "b"], merges: [], pre: "smollm", addBOS: true)
        }
    }

    @Test("merges apply by rank and BOS/EOS are added when the model asks")
    func mergesAndSpecials() throws {
        let vocabulary = TinyVocabulary(extra: [("ab", 1), ("abc", 1), ("<s>", 3), ("</s>", 3)])
        let tokenizer = try Tokenizer(
            tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: ["a b", "ab c"], pre: "gpt-2",
            bosID: vocabulary.id("<s>"), eosID: vocabulary.id("</s>"), addBOS: true, addEOS: true
        )
        let ids = tokenizer.encode("abc")
        #expect(ids == [vocabulary.id("<s>"), vocabulary.id("abc"), vocabulary.id("</s>")])
        #expect(tokenizer.encode("abc", addSpecial: false) == [vocabulary.id("abc")])
        #expect(tokenizer.isEndOfGeneration(vocabulary.id("</s>")))
    }

    @Test("a merge whose result is not in the vocabulary falls back to single-byte tokens, as in llama.cpp")
    func missingMergeResult() throws {
        let vocabulary = TinyVocabulary()
        let tokenizer = try Tokenizer(tokens: vocabulary.tokens, merges: ["a b"], pre: "gpt-2")
        #expect(tokenizer.encode("ab", addSpecial: false) == [vocabulary.id("a"), vocabulary.id("b")])
    }

    @Test("user-defined tokens are cut out of text even without special parsing")
    func userDefined() throws {
        let vocabulary = TinyVocabulary(extra: [("<tool>", 4), ("<ctl>", 3)])
        let tokenizer = try Tokenizer(
            tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: [], pre: "smollm"
        )
        let tool = vocabulary.id("<tool>"), control = vocabulary.id("<ctl>")
        #expect(tokenizer.encode("a<tool>b", addSpecial: false) == [vocabulary.id("a"), tool, vocabulary.id("b")])
        #expect(!tokenizer.encode("<ctl>", addSpecial: false).contains(control))
        #expect(tokenizer.encode("<ctl>", addSpecial: false, parseSpecial: true) == [control])
        // User-defined tokens always render; control tokens only on request.
        #expect(tokenizer.decode([tool, control]) == "<tool>")
        #expect(tokenizer.decode([tool, control], renderSpecial: true) == "<tool><ctl>")
    }

    @Test("a longer special token wins over a shorter one inside it")
    func longestFirst() throws {
        let vocabulary = TinyVocabulary(extra: [("<a>", 3), ("<a><b>", 3)])
        let tokenizer = try Tokenizer(
            tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: [], pre: "smollm"
        )
        #expect(tokenizer.encode("<a><b><a>", addSpecial: false, parseSpecial: true)
            == [vocabulary.id("<a><b>"), vocabulary.id("<a>")])
    }

    @Test("a token spelled <|im_end|> becomes a control, end-of-generation token even if typed normal")
    func knownEndOfGenerationText() throws {
        let vocabulary = TinyVocabulary(extra: [("<|im_end|>", 1)])
        let tokenizer = try Tokenizer(
            tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: [], pre: "smollm"
        )
        let id = vocabulary.id("<|im_end|>")
        #expect(tokenizer.isEndOfGeneration(id))
        #expect(tokenizer.eotID == id)
        #expect(tokenizer.attributes(of: id)?.contains(.control) == true)
        #expect(tokenizer.encode("<|im_end|>", addSpecial: false, parseSpecial: true) == [id])
    }

    @Test("llama-bpe adds BOS unless the model says otherwise")
    func llamaBPEDefaults() throws {
        let vocabulary = TinyVocabulary(extra: [("<|begin_of_text|>", 3)])
        let bos = vocabulary.id("<|begin_of_text|>")
        let byDefault = try Tokenizer(tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: [],
                                      pre: "llama-bpe", bosID: bos)
        #expect(byDefault.addBOS)
        #expect(byDefault.encode("x").first == bos)
        let told = try Tokenizer(tokens: vocabulary.tokens, tokenTypes: vocabulary.types, merges: [],
                                 pre: "llama-bpe", bosID: bos, addBOS: false)
        #expect(told.encode("x") == [vocabulary.id("x")])
    }

    @Test("errors print their code, message and cause")
    func errorDescription() {
        let cause = TokenizationError(.invalidTokenID, "inner")
        let error = TokenizationError(.invalidVocabulary, "outer", cause: cause)
        #expect("\(error)" == "invalid vocabulary: outer (caused by: invalid token id: inner)")
    }
}
