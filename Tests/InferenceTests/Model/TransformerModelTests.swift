import Foundation
import GGUF
import Testing

@testable import Inference

@Suite("Transformer model")
struct TransformerModelTests {
    @Test("the weights are mapped with their shapes and the output is tied to the embedding")
    func mapsWeights() throws {
        let model = try EngineTestModel.model()
        let w = model.weights
        #expect(w.layers.count == 30)
        #expect(w.tokenEmbedding.rows == 49_152 && w.tokenEmbedding.columns == 576)
        #expect(w.outputIsTied)
        #expect(w.output.base == w.tokenEmbedding.base)
        let layer = w.layers[7]
        #expect(layer[.query].rows == 576 && layer[.query].columns == 576)
        #expect(layer[.key].rows == 192 && layer[.value].rows == 192)
        #expect(layer[.gate].rows == 1536 && layer[.down].columns == 1536)
        #expect(layer.attentionNorm.count == 576)
        #expect(layer.queryBias == nil)
        // Per layer Q and O 576×576, K and V 192×576, gate/up/down 1536×576; plus the 49152×576 output.
        #expect(w.multiplyAccumulatesPerToken == 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576) + 49_152 * 576)
    }

    @Test("the fingerprint is stable across loads and stamped on the KV layout")
    func fingerprintIsStable() throws {
        let model = try EngineTestModel.model()
        let again = try TransformerModel(path: try DefaultModel.resolve(nil))
        #expect(model.fingerprint == again.fingerprint)
        #expect(model.fingerprint.hasPrefix("llama-"))
        #expect(model.fingerprint.count == "llama-".count + 16)
        let layout = model.kvCacheLayout()
        #expect(layout.modelFingerprint == model.fingerprint)
        #expect(layout.layers == 30 && layout.kvHeads == 3 && layout.headDim == 64 && layout.dataType == .f16)
    }

    @Test("RoPE rotates adjacent pairs by position times base^(-2i/d)")
    func ropeRotatesAdjacentPairs() throws {
        var angles = [Float](repeating: 0, count: 8)
        var x: [Float] = [1, 0, 1, 0, 0, 1, 0, 1]
        angles.withUnsafeMutableBufferPointer {
            RowSteps.ropeAngles(dimensions: 8, position: 3, base: 10_000, scale: 1, factors: nil, into: $0.baseAddress!)
        }
        x.withUnsafeMutableBufferPointer { p in
            angles.withUnsafeBufferPointer { RowSteps.rotateAdjacentPairs(p.baseAddress!, $0.baseAddress!, 8) }
        }
        for i in 0..<4 {
            let theta = 3 * Float(pow(10_000.0, -2.0 * Double(i) / 8))
            let expected: (Float, Float) = i < 2 ? (cos(theta), sin(theta)) : (-sin(theta), cos(theta))
            #expect(abs(x[2 * i] - expected.0) < 1e-5 && abs(x[2 * i + 1] - expected.1) < 1e-5, "pair \(i)")
        }
    }

    @Test("RoPE on halves rotates x[i] with x[i + d/2], each pair's angle divided by its frequency factor")
    func ropeRotatesHalvesWithFactors() {
        var angles = [Float](repeating: 0, count: 8)
        let factors: [Float] = [1, 2, 4, 8]
        angles.withUnsafeMutableBufferPointer {
            RowSteps.ropeAngles(dimensions: 8, position: 5, base: 500, scale: 0.5, factors: factors, into: $0.baseAddress!)
        }
        var x: [Float] = [1, 1, 1, 1, 0, 0, 0, 0]
        x.withUnsafeMutableBufferPointer { p in
            angles.withUnsafeBufferPointer { RowSteps.rotateHalves(p.baseAddress!, $0.baseAddress!, 8) }
        }
        for i in 0..<4 {
            let theta = 0.5 * 5 * Float(pow(500.0, -2.0 * Double(i) / 8)) / factors[i]
            #expect(abs(x[i] - cos(theta)) < 1e-5 && abs(x[i + 4] - sin(theta)) < 1e-5, "pair \(i)")
        }
    }
}
