import Foundation
import GGUF
import Testing

@testable import Inference

@Suite("Llama configuration")
struct ModelConfigurationTests {
    @Test("the default model's hyperparameters are read from its metadata")
    func readsDefaultModel() throws {
        let c = try EngineTestModel.model().configuration
        #expect(c.architecture == "llama")
        #expect(c.layerCount == 30)
        #expect(c.embeddingLength == 576)
        #expect(c.feedForwardLength == 1536)
        #expect(c.headCount == 9)
        #expect(c.kvHeadCount == 3)
        #expect(c.headDimension == 64)
        #expect(c.ropeDimensionCount == 64)
        #expect(c.ropeFrequencyBase == 100_000)
        #expect(c.ropeScaling == .none)
        #expect(abs(c.rmsNormEpsilon - 1e-5) < 1e-9)
        #expect(c.contextLength == 8192)
        #expect(c.vocabularySize == 49_152)
    }

    @Test("inconsistent hyperparameters are refused with the key at fault")
    func refusesInconsistentValues() {
        func attempt(headCount: Int = 9, kvHeads: Int = 3, rope: Int? = nil, epsilon: Float = 1e-5) -> InferenceError? {
            do {
                _ = try ModelConfiguration(
                    architecture: "llama", layerCount: 2, embeddingLength: 576, feedForwardLength: 1536,
                    headCount: headCount, kvHeadCount: kvHeads, ropeDimensionCount: rope, rmsNormEpsilon: epsilon,
                    contextLength: 128, vocabularySize: 100)
                return nil
            } catch {
                return error
            }
        }
        #expect(attempt() == nil)
        let heads = attempt(headCount: 7)
        #expect(heads?.code == .invalidModel)
        #expect(heads?.message.contains("llama.attention.head_count") == true)
        #expect(attempt(kvHeads: 4)?.message.contains("head_count_kv") == true)
        #expect(attempt(kvHeads: 0)?.message.contains("head_count_kv") == true)
        #expect(attempt(rope: 65)?.message.contains("rope.dimension_count") == true)
        #expect(attempt(rope: 128)?.message.contains("rope.dimension_count") == true)
        #expect(attempt(epsilon: 0)?.message.contains("layer_norm_rms_epsilon") == true)
    }

    @Test("a missing key is named in the error")
    func namesMissingKey() throws {
        let file = try GGUFFile(bytes: GGUFBytes.metadataOnly([
            ("general.architecture", .string("llama")),
            ("llama.block_count", .uint32(2)),
            ("llama.embedding_length", .uint32(64)),
            ("llama.attention.head_count", .uint32(4)),
            ("llama.context_length", .uint32(128)),
            ("llama.vocab_size", .uint32(10)),
        ]), name: "test.gguf")
        let error = #expect(throws: InferenceError.self) { _ = try ModelConfiguration(gguf: file) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("llama.feed_forward_length") == true)
    }

    @Test("an unsupported architecture or RoPE scaling is refused by name")
    func refusesUnsupported() throws {
        var keys: [(String, GGUFBytes.Value)] = [
            ("general.architecture", .string("llama")),
            ("llama.block_count", .uint32(2)),
            ("llama.embedding_length", .uint32(64)),
            ("llama.feed_forward_length", .uint32(128)),
            ("llama.attention.head_count", .uint32(4)),
            ("llama.context_length", .uint32(128)),
            ("llama.vocab_size", .uint32(10)),
            ("llama.rope.scaling.type", .string("yarn")),
        ]
        let yarn = try GGUFFile(bytes: GGUFBytes.metadataOnly(keys), name: "yarn.gguf")
        let scaling = #expect(throws: InferenceError.self) { _ = try ModelConfiguration(gguf: yarn) }
        #expect(scaling?.code == .unsupportedModel)
        #expect(scaling?.message.contains("yarn") == true)

        keys[0] = ("general.architecture", .string("mamba"))
        keys = keys.map { ($0.0.replacingOccurrences(of: "llama.", with: "mamba."), $0.1) }
        keys.removeLast()
        let mamba = try GGUFFile(bytes: GGUFBytes.metadataOnly(keys), name: "mamba.gguf")
        let architecture = #expect(throws: InferenceError.self) { _ = try TransformerModel(file: mamba) }
        #expect(architecture?.code == .unsupportedModel)
        #expect(architecture?.message.contains("mamba") == true)
    }
}

/// Builds a minimal GGUF v3 file (metadata only, no tensors) for error-path tests.
enum GGUFBytes {
    enum Value {
        case uint32(UInt32)
        case string(String)
    }

    static func metadataOnly(_ entries: [(String, Value)]) -> [UInt8] {
        var bytes: [UInt8] = Array("GGUF".utf8)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        func append(_ string: String) {
            append(UInt64(string.utf8.count))
            bytes += Array(string.utf8)
        }
        append(UInt32(3))
        append(UInt64(0))
        append(UInt64(entries.count))
        for (key, value) in entries {
            append(key)
            switch value {
            case .uint32(let v):
                append(UInt32(4))
                append(v)
            case .string(let s):
                append(UInt32(8))
                append(s)
            }
        }
        while bytes.count % 32 != 0 { bytes.append(0) }
        return bytes
    }
}
