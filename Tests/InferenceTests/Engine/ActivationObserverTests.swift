import Testing

@testable import Inference

/// The forward pass's intermediate tensors, as `baton activations` and compare_activations.py read them.
@Suite("Activation observer")
struct ActivationObserverTests {
    static let perLayer = [
        "attn_norm", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "ffn_inp", "ffn_norm", "ffn_swiglu", "ffn_out", "l_out",
    ]

    /// Everything one engine's observer saw, in order.
    final class Recorder {
        var names: [String] = []
        var tensors: [String: (rows: Int, width: Int, values: [Float])] = [:]

        func observe(_ a: Activation) {
            #expect(a.values.count == a.rows * a.width, "\(a.name)")
            names.append(a.name)
            tensors[a.name] = (a.rows, a.width, Array(a.values))
        }

        func last(_ name: String) -> [Float] {
            guard let t = tensors[name] else { return [] }
            return Array(t.values[(t.rows - 1) * t.width..<t.rows * t.width])
        }
    }

    static func expectedNames(layers: Int) -> [String] {
        ["inp_embd"] + (0..<layers).flatMap { l in perLayer.map { "\($0)-\(l)" } } + ["result_norm", "result_output"]
    }

    @Test("the decode path shows every tensor once per pass, in graph order, and observing changes no logit")
    func decodePath() throws {
        let model = try EngineTestModel.model()
        let c = model.configuration
        let cache = try EngineTestModel.cache(model, blocks: 8)
        let engine = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 64)
        let prompt: [Int32] = [504, 3575, 282]
        let plainSequence = cache.createSequence()
        let plain = try engine.ingest(prompt, sequence: plainSequence)
        cache.free(plainSequence)

        let recorder = Recorder()
        engine.activationObserver = recorder.observe
        defer { engine.activationObserver = nil }
        let sequence = cache.createSequence()
        let observed = try engine.ingest(prompt, sequence: sequence)
        #expect(observed == plain)
        let names = Self.expectedNames(layers: c.layerCount)
        let perPass: [[String]] = Array(repeating: names, count: prompt.count)
        #expect(recorder.names == Array(perPass.joined()))

        #expect(recorder.last("result_output") == observed)
        #expect(recorder.tensors["Qcur-0"]?.width == c.queryDimension)
        #expect(recorder.tensors["Kcur-0"]?.width == c.kvDimension)
        #expect(recorder.tensors["ffn_swiglu-0"]?.width == c.feedForwardLength)
        // The residual stream: each layer's output is its feed-forward input plus its feed-forward output.
        for l in [0, c.layerCount / 2, c.layerCount - 1] {
            let sum = zip(recorder.last("ffn_inp-\(l)"), recorder.last("ffn_out-\(l)")).map { $0 + $1 }
            #expect(sum == recorder.last("l_out-\(l)"), "layer \(l)")
        }
    }

    @Test("the prefill path shows every row of the pass and the logit rows of the result")
    func prefillPath() throws {
        let model = try EngineTestModel.model()
        let c = model.configuration
        let cache = try EngineTestModel.cache(model, blocks: 8)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 64)
        let recorder = Recorder()
        engine.activationObserver = recorder.observe
        let prompt: [Int32] = [504, 3575, 282, 4649, 314]
        let logits = try engine.prefill(prompt, sequence: cache.createSequence())
        #expect(recorder.names == Self.expectedNames(layers: c.layerCount))
        #expect(recorder.tensors["attn_norm-3"]?.rows == prompt.count)
        #expect(recorder.tensors["result_output"]?.rows == 1)
        #expect(recorder.last("result_output") == logits)
    }
}
