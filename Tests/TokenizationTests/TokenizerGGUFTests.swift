import GGUF
import Testing
import Tokenization

/// Writes a tensor-less GGUF v3 file in memory, to feed `Tokenizer(gguf:)` exactly the metadata a test wants.
struct MetadataOnlyGGUF {
    enum Value {
        case string(String)
        case uint32(UInt32)
        case bool(Bool)
        case strings([String])
        case int32s([Int32])
    }

    var entries: [(String, Value)] = []

    var bytes: [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        append(UInt32(3), to: &out)
        append(UInt64(0), to: &out)  // tensors
        append(UInt64(entries.count), to: &out)
        for (key, value) in entries {
            appendString(key, to: &out)
            switch value {
            case .string(let text):
                append(UInt32(8), to: &out)
                appendString(text, to: &out)
            case .uint32(let number):
                append(UInt32(4), to: &out)
                append(number, to: &out)
            case .bool(let flag):
                append(UInt32(7), to: &out)
                out.append(flag ? 1 : 0)
            case .strings(let texts):
                append(UInt32(9), to: &out)
                append(UInt32(8), to: &out)
                append(UInt64(texts.count), to: &out)
                for text in texts { appendString(text, to: &out) }
            case .int32s(let numbers):
                append(UInt32(9), to: &out)
                append(UInt32(5), to: &out)
                append(UInt64(numbers.count), to: &out)
                for number in numbers { append(UInt32(bitPattern: number), to: &out) }
            }
        }
        return out
    }

    private func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        for byte in 0..<(T.bitWidth / 8) { out.append(UInt8(truncatingIfNeeded: value >> (byte * 8))) }
    }

    private func appendString(_ text: String, to out: inout [UInt8]) {
        append(UInt64(text.utf8.count), to: &out)
        out.append(contentsOf: text.utf8)
    }

    func file() throws -> GGUFFile { try GGUFFile(bytes: bytes, name: "test.gguf") }
}

@Suite("Tokenizer from GGUF metadata")
struct TokenizerGGUFTests {
    static func tinyModel(pre: String? = "smollm", model: String = "gpt2") -> MetadataOnlyGGUF {
        let vocabulary = TinyVocabulary(extra: [("ab", 1), ("<|im_end|>", 3)])
        var gguf = MetadataOnlyGGUF()
        gguf.entries.append(("tokenizer.ggml.model", .string(model)))
        if let pre { gguf.entries.append(("tokenizer.ggml.pre", .string(pre))) }
        gguf.entries.append(("tokenizer.ggml.tokens", .strings(vocabulary.tokens)))
        gguf.entries.append(("tokenizer.ggml.token_type", .int32s(vocabulary.types)))
        gguf.entries.append(("tokenizer.ggml.merges", .strings(["a b"])))
        gguf.entries.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(vocabulary.id("<|im_end|>")))))
        gguf.entries.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(vocabulary.id("<|im_end|>")))))
        gguf.entries.append(("tokenizer.ggml.add_bos_token", .bool(false)))
        return gguf
    }

    @Test("a GGUF vocabulary with merges and special ids builds a working tokenizer")
    func builds() throws {
        let tokenizer = try Tokenizer(gguf: Self.tinyModel().file())
        let vocabulary = TinyVocabulary(extra: [("ab", 1), ("<|im_end|>", 3)])
        #expect(tokenizer.vocabularySize == 258)
        #expect(tokenizer.eosID == vocabulary.id("<|im_end|>"))
        #expect(!tokenizer.addBOS)
        #expect(tokenizer.encode("abab") == [vocabulary.id("ab"), vocabulary.id("ab")])
        #expect(tokenizer.isEndOfGeneration(vocabulary.id("<|im_end|>")))
    }

    @Test("a tokenizer model other than BPE and SentencePiece is refused with its name")
    func refusesOtherModels() throws {
        let file = try Self.tinyModel(model: "bert").file()
        do {
            _ = try Tokenizer(gguf: file)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .unsupportedModel)
            #expect(error.message.contains("test.gguf") && error.message.contains("'bert'"))
        }
    }

    @Test("a missing pre-tokenizer is refused rather than silently degraded")
    func missingPre() throws {
        let file = try Self.tinyModel(pre: nil).file()
        #expect(throws: TokenizationError.self) { try Tokenizer(gguf: file) }
    }

    @Test("a missing vocabulary key names the key and keeps the GGUF error as cause")
    func missingMerges() throws {
        var gguf = Self.tinyModel()
        gguf.entries.removeAll { $0.0 == "tokenizer.ggml.merges" }
        do {
            _ = try Tokenizer(gguf: gguf.file())
            Issue.record("expected an error")
        } catch let error as TokenizationError {
            #expect(error.code == .invalidVocabulary)
            #expect(error.message.contains("tokenizer.ggml.merges"))
            #expect(error.cause is GGUFError)
        }
    }

    @Test("a mistyped key is an error, not a crash")
    func mistyped() throws {
        var gguf = Self.tinyModel()
        gguf.entries.removeAll { $0.0 == "tokenizer.ggml.add_bos_token" }
        gguf.entries.append(("tokenizer.ggml.add_bos_token", .string("yes")))
        #expect(throws: TokenizationError.self) { try Tokenizer(gguf: gguf.file()) }
    }
}
