import Foundation
import Testing
import GGUF

/// The real default model, checked against figures read with Python's `gguf` package.
@Suite("GGUF reader on the default model")
struct DefaultModelTests {
    static func open() throws -> GGUFFile {
        let path = DefaultModel.path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("default model missing at \(path); fetch it with `\(DefaultModel.fetchCommand)`")
            throw GGUFError(.fileNotFound, "default model missing at \(path)")
        }
        return try GGUFFile(path: path)
    }

    @Test("the default model has 272 tensors in 30 llama layers, quantized Q4_1 with a Q8_0 embedding")
    func structure() throws {
        let file = try Self.open()
        #expect(file.version == 3)
        #expect(file.fileSize == 98_362_432)
        #expect(file.tensors.count == 272)
        #expect(file.metadataKeys.count == 33)
        #expect(try file.string("general.architecture") == "llama")
        #expect(try file.integer("llama.block_count") == 30)
        let layers = Set(file.tensors.compactMap { $0.name.hasPrefix("blk.") ? $0.name.split(separator: ".")[1] : nil })
        #expect(layers.count == 30)
        var histogram: [String: Int] = [:]
        for tensor in file.tensors { histogram[tensor.type.name, default: 0] += 1 }
        #expect(histogram == ["Q4_1": 210, "F32": 61, "Q8_0": 1])
        #expect(file.tensors.reduce(0) { $0 + $1.elementCount } == 134_515_008)
    }

    @Test("token_embd.weight is Q8_0 [576, 49152] at the offset llama.cpp's gguf-py reports")
    func tokenEmbedding() throws {
        let file = try Self.open()
        let embedding = try #require(file.tensor(named: "token_embd.weight"))
        #expect(embedding.type == .q8_0)
        #expect(embedding.dimensions == [576, 49152])
        #expect(embedding.rowLength == 576 && embedding.rowCount == 49152)
        #expect(embedding.offset == 1_785_664 && embedding.byteCount == 30_081_024)
        let last = try #require(file.tensors.last)
        #expect(last.name == "output_norm.weight" && last.offset + last.byteCount == file.fileSize)
        // First Q8_0 block: a finite, positive f16 scale.
        let scale = file.withTensorData(embedding) { Float(Float16(bitPattern: $0.loadUnaligned(as: UInt16.self))) }
        #expect(scale.isFinite && scale > 0)
    }

    @Test("hyperparameters and tokenizer metadata read through the typed accessors")
    func metadata() throws {
        let file = try Self.open()
        #expect(try file.integer("llama.embedding_length") == 576)
        #expect(try file.integer("llama.feed_forward_length") == 1536)
        #expect(try file.integer("llama.attention.head_count") == 9)
        #expect(try file.integer("llama.attention.head_count_kv") == 3)
        #expect(try file.integer("llama.context_length") == 8192)
        #expect(try file.float("llama.rope.freq_base") == 100_000)
        #expect(try file.float("llama.attention.layer_norm_rms_epsilon") == 1e-5)
        #expect(try file.string("tokenizer.ggml.model") == "gpt2")
        #expect(try file.string("tokenizer.ggml.pre") == "smollm")
        #expect(try file.stringArray("tokenizer.ggml.tokens").count == 49152)
        #expect(try file.integerArray("tokenizer.ggml.token_type").count == 49152)
        #expect(try file.stringArray("tokenizer.ggml.merges").count == 48900)
        #expect(try file.bool("tokenizer.ggml.add_bos_token") == false)
        #expect(try file.string("tokenizer.chat_template").contains("<|im_start|>"))
    }
}
