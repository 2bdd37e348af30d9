import Foundation
import Testing

@testable import Inference

/// Greedy continuations agree with llama.cpp's on the same GGUF (Fixtures/greedy_references.json, made by
/// Deploy/scripts/make_greedy_references.py: 12 raw and 12 chat-templated prompts, 32 greedy tokens each, with
/// llama.cpp's top-2 logits at every step).
///
/// Exact identity is not attainable at close calls: llama.cpp quantizes activations to 8 bits before every
/// quantized product, so its logits carry noise of ≈0.05–0.3 (one ULP upstream flips some roundings, which
/// cascade). llama.cpp does not even agree with itself across batch sizes: the fixture's
/// `llama_cpp_batch1_divergence_step` records where its own n_batch=1 run departs from the n_batch=512 one
/// (9 of the 24 cases). So the test is teacher-forced — Baton reads llama.cpp's tokens and must pick llama.cpp's
/// token at every one of the ~680 steps — except at near-ties, where Baton scores llama.cpp's pick within
/// `nearTieGap` of its own. A mismatch at a clear gap is a bug (a wrong RoPE, mask or kernel moves logits by
/// whole units).
@Suite("Greedy agreement with llama.cpp")
struct GreedyReferenceTests {
    /// A mismatch is a near-tie when Baton scored llama.cpp's pick within this of its own. Measured: Baton's and
    /// llama.cpp's logits differ by up to ≈0.5 at the top (logit range ≈ 25), the size of the 8-bit noise;
    /// every mismatch seen so far has a gap below 0.35 on both sides (bar one flat step, 0.15 here and its pick
    /// outside llama.cpp's top 5).
    static let nearTieGap = 0.5

    /// Bound on the mean difference between Baton's and llama.cpp's logits over llama.cpp's top 5 (logit range
    /// ≈ 25): about 3× llama.cpp's own batch-size noise, 1.5× Baton's measured 0.30.
    static let meanLogitNoise = 0.45

    struct Fixture: Decodable {
        let steps: Int
        let cases: [Case]
    }

    struct Case: Decodable {
        let kind: String
        let prompt_tokens: [Int32]
        let tokens: [Int32]
        let ended_with_eog: Bool
        let top2: [[Int32]]
        let top2_logit_gaps: [Double]
        /// llama.cpp's five best `[token, logit]` per step (decoded from JSON arrays of two numbers).
        let top5: [[Double]]
        let llama_cpp_batch1_divergence_step: Int?

        enum CodingKeys: String, CodingKey {
            case kind, prompt_tokens, tokens, ended_with_eog, top2, top2_logit_gaps, top5, llama_cpp_batch1_divergence_step
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(String.self, forKey: .kind)
            prompt_tokens = try c.decode([Int32].self, forKey: .prompt_tokens)
            tokens = try c.decode([Int32].self, forKey: .tokens)
            ended_with_eog = try c.decode(Bool.self, forKey: .ended_with_eog)
            top2 = try c.decode([[Int32]].self, forKey: .top2)
            top2_logit_gaps = try c.decode([Double].self, forKey: .top2_logit_gaps)
            top5 = try c.decode([[[Double]]].self, forKey: .top5).map { $0.flatMap { $0 } }
            llama_cpp_batch1_divergence_step = try c.decodeIfPresent(Int.self, forKey: .llama_cpp_batch1_divergence_step)
        }

        /// How far below llama.cpp's best logit it put `token` at `step`, or nil if not among its top 5.
        func deficit(of token: Int32, at step: Int) -> Double? {
            let entries = top5[step]
            for i in stride(from: 0, to: entries.count, by: 2) where Int32(entries[i]) == token {
                return entries[1] - entries[i + 1]
            }
            return nil
        }
    }

    static func fixture() throws -> Fixture {
        guard let url = Bundle.module.url(forResource: "greedy_references", withExtension: "json", subdirectory: "Fixtures")
        else {
            throw InferenceError(.invalidArgument, "Fixtures/greedy_references.json is missing from the test bundle")
        }
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    static func rounded(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }

    static func top(_ logits: [Float], _ count: Int) -> [(Int, Float)] {
        Array(logits.enumerated().sorted { $0.element > $1.element }.prefix(count)).map { ($0.offset, $0.element) }
    }

    @Test("at every step Baton picks llama.cpp's greedy token, except at near-ties")
    func greedyMatchesLlamaCpp() throws {
        let fixture = try Self.fixture()
        #expect(fixture.cases.filter { $0.kind == "raw" }.count >= 12)
        #expect(fixture.cases.filter { $0.kind == "chat" }.count >= 12)
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 128)
        let prefill = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let decode = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 256)
        var steps = 0
        var nearTies: [String] = []
        var identicalContinuations = 0
        var deltas: [Double] = []
        for (index, reference) in fixture.cases.enumerated() {
            #expect(reference.top2.count == reference.tokens.count + (reference.ended_with_eog ? 1 : 0))
            let sequence = cache.createSequence()
            defer { cache.free(sequence) }
            // Prompt on the prefill path, then llama.cpp's own tokens on the decode path.
            var logits = try prefill.prefill(reference.prompt_tokens, sequence: sequence)
            var identical = true
            for (step, top2) in reference.top2.enumerated() {
                if step > 0 {
                    try decode.step([DecodeInput(sequence: sequence, token: reference.tokens[step - 1])])
                    logits = decode.logits(row: 0)
                }
                steps += 1
                // How far Baton's logits sit from llama.cpp's, over llama.cpp's five best tokens.
                deltas.append(stride(from: 0, to: reference.top5[step].count, by: 2).map { i in
                    abs(Double(logits[Int(reference.top5[step][i])]) - reference.top5[step][i + 1])
                }.max() ?? 0)
                let ours = argmax(logits)
                if ours == top2[0] { continue }
                identical = false
                // A near-tie seen from both sides: Baton scored llama.cpp's pick within `nearTieGap` of its own.
                let ourGap = Double(logits[Int(ours)] - logits[Int(top2[0])])
                let theirGap = reference.deficit(of: ours, at: step)
                nearTies.append("case \(index) step \(step): gap \(Self.rounded(ourGap)) here, \(theirGap.map { "\(Self.rounded($0))" } ?? "> top 5") in llama.cpp")
                #expect(
                    ourGap < Self.nearTieGap,
                    "case \(index) (\(reference.kind)) step \(step): Baton picks \(ours) over llama.cpp's \(top2[0]) by a clear \(ourGap); Baton's top 5: \(Self.top(logits, 5)), llama.cpp's: \(reference.top5[step])")
            }
            if identical { identicalContinuations += 1 }
        }
        #expect(steps >= 500)
        // The 8-bit noise, measured: llama.cpp's own logits move by 0.146 on average (p90 0.38) between n_batch=512
        // and n_batch=1 (`make_greedy_references.py --noise-floor`); Baton's sit 0.30 (p90 0.47) from llama.cpp's.
        // Both are one-ULP differences amplified by activation roundings that flip (`compare_activations.py`
        // shows the two equal op for op to within a few ULP until a flip); a wrong RoPE, mask or kernel moves
        // logits by whole units.
        let sorted = deltas.sorted()
        let mean = deltas.reduce(0, +) / Double(deltas.count), p90 = sorted[sorted.count * 9 / 10]
        #expect(mean < Self.meanLogitNoise && p90 < 2 * Self.meanLogitNoise, "mean \(mean), p90 \(p90)")
        // Reported for the record (the count of close calls varies with the noise, the test gates on the gaps).
        print("greedy agreement: \(steps - nearTies.count)/\(steps) steps identical, \(identicalContinuations)/\(fixture.cases.count) continuations identical; logits differ from llama.cpp's by \(Self.rounded(mean)) on average (p90 \(Self.rounded(p90)), max \(Self.rounded(sorted.last ?? 0))); near-ties: \(nearTies)")
    }

    /// llama.cpp's own top-2 gap below which a free-running divergence counts as a near-tie. Measured: every
    /// divergence so far sits at a gap ≤ 0.18 (logit range ≈ 25); llama.cpp run with n_batch=1 diverges from
    /// itself at gaps this size in 9 of the 24 cases.
    static let freeRunNearTie = 0.25

    @Test("free-running greedy continuations equal llama.cpp's or part from it at a near-tie")
    func freeRunningContinuations() throws {
        let fixture = try Self.fixture()
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 128)
        let prefill = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let decode = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 256)
        var identical = 0
        var divergences: [String] = []
        for (index, reference) in fixture.cases.enumerated() {
            let sequence = cache.createSequence()
            defer { cache.free(sequence) }
            var next = argmax(try prefill.prefill(reference.prompt_tokens, sequence: sequence))
            var divergence: Int?
            for step in reference.tokens.indices {
                if next != reference.tokens[step] { divergence = step; break }
                try decode.step([DecodeInput(sequence: sequence, token: next)])
                next = decode.argmax(row: 0)
            }
            guard let step = divergence else { identical += 1; continue }
            let gap = reference.top2_logit_gaps[step]
            divergences.append("case \(index) (\(reference.kind)) parts at step \(step), llama.cpp's top-2 gap \(gap)")
            #expect(
                gap < Self.freeRunNearTie,
                "case \(index) (\(reference.kind)): Baton's continuation parts from llama.cpp's at step \(step), where llama.cpp's top-2 gap is a clear \(gap)")
        }
        print("free-running: \(identical)/\(fixture.cases.count) continuations identical to llama.cpp's; \(divergences)")
    }
}

