import Foundation
import GGUF
import Testing

@testable import Inference

/// The default model, loaded once for all engine tests (immutable, so shareable). Tests that need it fail with
/// the fetch instructions when it is missing.
enum EngineTestModel {
    static let loaded: Result<TransformerModel, InferenceError> = {
        let path: String
        do { path = try DefaultModel.resolve(nil) } catch {
            return .failure(InferenceError(.invalidModel, "\(error)"))
        }
        do { return .success(try TransformerModel(path: path)) } catch let error as InferenceError { return .failure(error) } catch { return .failure(InferenceError(.invalidModel, "\(error)")) }
    }()

    static func model() throws -> TransformerModel {
        try loaded.get()
    }

    /// A cache sized for a few short sequences.
    static func cache(_ model: TransformerModel, blocks: Int = 64) throws -> PagedKVCache {
        try PagedKVCache(layout: model.kvCacheLayout(), blockCount: blocks)
    }

    /// A fixed prompt of in-vocabulary ids ("The capital of France is" and more, as llama.cpp tokenizes it).
    static let prompt: [Int32] = [504, 3575, 282, 4649, 314, 7042, 30, 378, 3575, 282, 7042, 314, 253, 1345, 30, 1345]
}

func argmax(_ values: [Float]) -> Int32 {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return Int32(best)
}

/// Largest |a - b| over two equally long vectors.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for i in a.indices { worst = max(worst, abs(a[i] - b[i])) }
    return worst
}
