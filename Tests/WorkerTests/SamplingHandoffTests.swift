import Inference
import KVTransport
import Testing
import Worker

@Suite("Sampling state hand-off")
struct SamplingHandoffTests {
    /// Deterministic pseudo-random logits.
    static func logits(_ step: Int, vocabulary: Int) -> [Float] {
        var state = UInt64(step + 1) &* 0x9E37_79B9_7F4A_7C15
        return (0..<vocabulary).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(state >> 40) % 2000) / 200 - 5
        }
    }

    @Test("a restored sampler draws what the original would have drawn next", arguments: [
        SamplingParameters(temperature: 0.8, seed: 7),
        SamplingParameters(temperature: 1.0, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1.3, seed: 8),
        SamplingParameters(temperature: 0.7, topK: 5, topP: 1, minP: 0.2, frequencyPenalty: 0.5, seed: 9),
        SamplingParameters(temperature: 0, repetitionPenalty: 1.2, seed: 10),
    ])
    func restoredSamplerContinues(_ parameters: SamplingParameters) throws {
        let vocabulary = 500
        let prompt: [Int32] = (0..<80).map { Int32($0 * 7 % vocabulary) }
        var original = SamplingHandoff.sampler(parameters: parameters, prompt: prompt, vocabularySize: vocabulary)
        var first = Self.logits(0, vocabulary: vocabulary)
        let firstToken = original.sample(logits: &first).id
        let state = try SamplingHandoff.state(parameters: parameters, seed: original.seed, prompt: prompt)
        var (restored, restoredParameters) = try SamplingHandoff.restore(state, firstToken: firstToken, vocabularySize: vocabulary)
        #expect(restoredParameters == parameters)
        for step in 1...20 {
            var a = Self.logits(step, vocabulary: vocabulary), b = a
            #expect(original.sample(logits: &a).id == restored.sample(logits: &b).id, "step \(step)")
        }
    }

    @Test("a completion with unreadable parameters or an out-of-range first token is refused")
    func badStateIsRefused() throws {
        let garbage = KVSamplingState(rngState: [1], recentTokens: [], parameters: Array("not json".utf8))
        let error = #expect(throws: WorkerError.self) { _ = try SamplingHandoff.restore(garbage, firstToken: 1, vocabularySize: 10) }
        #expect(error?.code == .badCompletion)
        let state = try SamplingHandoff.state(parameters: .greedy, seed: 1, prompt: [1, 2])
        let range = #expect(throws: WorkerError.self) { _ = try SamplingHandoff.restore(state, firstToken: 10, vocabularySize: 10) }
        #expect(range?.code == .badCompletion)
    }
}
