import Foundation
import Testing

@testable import Inference

/// Greedy continuations agree with llama.cpp's on the same GGUF, on every ISA path (Fixtures/greedy_references.json,
/// made by Deploy/scripts/make_greedy_references.py: 12 raw and 12 chat-templated prompts, 32 greedy tokens each,
/// with the reference llama.cpp build's top-5 logits at every step).
///
/// Exact identity is not attainable at close calls: llama.cpp quantizes activations to 8 bits before every
/// quantized product, so one ULP of float-order difference upstream flips some roundings, which cascade into
/// logit differences of ≈0.05–0.5. llama.cpp does not agree with itself either: the fixture's `llama_cpp_spread`
/// records how far its own builds (AVX-512, AVX2 and scalar, each with n_batch 512 and 1) are from the reference
/// build on the same tokens. Every bound below is that spread times one stated allowance (`noiseAllowance`): Baton,
/// on whichever ISA path it runs (BATON_ISA), may be as far from the reference as llama.cpp's own builds are, with
/// room for being `noiseAllowance` times as noisy. A wrong RoPE, mask or kernel moves logits by whole units and
/// picks other tokens at clear gaps, which these bounds do not admit.
///
/// The test is teacher-forced — Baton reads the reference's tokens and must pick the reference's token at every
/// one of the ~680 steps, except where its own margin for another token is within what llama.cpp's builds show —
/// and free-running, where Baton's continuation may part from the reference only at a step whose reference top-2
/// gap is within the largest at which llama.cpp's builds part from it.
@Suite("Greedy agreement with llama.cpp")
struct GreedyReferenceTests {
    /// How many times as far from the reference as llama.cpp's own builds Baton may be, on every figure: its mean and
    /// p90 logit difference, its own margin where it picks another token, and the reference's top-2 gap where its
    /// continuation parts.
    ///
    /// Where the numbers come from. llama.cpp's spread (the fixture's `llama_cpp_spread`, printed by
    /// `~/.cache/baton/venv/bin/python Deploy/scripts/make_greedy_references.py`, builds from
    /// `Deploy/scripts/build-llamacpp.sh`, on a Zen 4 AVX-512 VNNI box; reference: the native AVX-512 build at n_batch
    /// 512, which reproduces the fixture made before to 6e-6):
    ///
    ///     build        steps same  continuations same  parting gap  flip gap  |Δlogit| mean  p90    max
    ///     scalar/512   658/682      9/24               0.674        0.258     0.282          0.463  1.49
    ///     scalar/1     658/682      9/24               0.674        0.258     0.282          0.463  1.49
    ///     avx2/512     660/682      8/24               0.178        0.322     0.253          0.420  1.18
    ///     avx2/1       660/682      8/24               0.175        0.322     0.261          0.440  1.18
    ///     avx512/1     670/682     15/24               0.177        0.284     0.143          0.371  1.07
    ///
    /// The bounds take the largest over all builds, not the same ISA's build: Baton's kernels add in their own order
    /// on every path, so each of its paths is one more "other summation order" next to llama.cpp's, and the five
    /// builds are the samples of what such an order does (a parting at a 0.674 gap is the scalar build's).
    ///
    /// Baton, `swift test --filter GreedyReferenceTests` on the same box, per path (the test prints these lines):
    ///
    ///     path                              steps same  parting gap  flip gap  |Δlogit| mean  p90
    ///     AVX-512 VNNI, OpenBLAS Cooperlake 657/682     0.190        0.372     0.297          0.470
    ///     AVX-512 VNNI, OpenBLAS Zen        660/682     0.330        0.405     0.293          0.490
    ///     AVX-512 VNNI, OpenBLAS Nehalem    661/682     0.507        0.338     0.280          0.483
    ///
    /// (OpenBLAS Zen is what the AVX2-only EPYC machines pick, and reproduces their parting at case 0 step 5, gap 0.33:
    /// prefill's sgemm order alone moves it.) The largest ratio of Baton's figure to llama.cpp's is 1.26 (flip gap
    /// 0.405 / 0.322); an allowance of 2 leaves that figure 37 % of room, the others more.
    static let noiseAllowance = 2.0

    struct Fixture: Decodable {
        let steps: Int
        let cases: [Case]
        let llama_cpp_spread: Spread
    }

    /// llama.cpp's own builds against the reference build, as make_greedy_references.py measured them.
    struct Spread: Decodable {
        struct Reference: Decodable {
            let isa: String
            let n_batch: Int
        }

        struct Delta: Decodable {
            let mean: Double
            let p90: Double
            let max: Double
        }

        struct Build: Decodable {
            let isa: String
            let n_batch: Int
            let steps: Int
            let steps_identical: Int
            let continuations_identical: Int
            let largest_parting_gap: Double
            let largest_flip_own_gap: Double
            let top5_logit_delta: Delta
        }

        let reference: Reference
        let variants: [Build]
        /// The largest reference top-2 gap at a step where a build's continuation parts from the reference's.
        let largest_parting_gap: Double
        /// The largest margin by which a build, fed the reference's tokens, prefers another token to the reference's.
        let largest_flip_own_gap: Double
        let largest_mean_top5_logit_delta: Double
        let largest_p90_top5_logit_delta: Double
    }

    struct Case: Decodable {
        let kind: String
        let prompt_tokens: [Int32]
        let tokens: [Int32]
        let ended_with_eog: Bool
        let top2: [[Int32]]
        let top2_logit_gaps: [Double]
        /// The reference's five best `[token, logit]` per step (decoded from JSON arrays of two numbers).
        let top5: [[Double]]

        enum CodingKeys: String, CodingKey {
            case kind, prompt_tokens, tokens, ended_with_eog, top2, top2_logit_gaps, top5
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
        }

        /// How far below the reference's best logit it put `token` at `step`, or nil if not among its top 5.
        func deficit(of token: Int32, at step: Int) -> Double? {
            let entries = top5[step]
            for i in stride(from: 0, to: entries.count, by: 2) where Int32(entries[i]) == token {
                return entries[1] - entries[i + 1]
            }
            return nil
        }
    }

    /// The path these figures are for: Baton's kernels (BATON_ISA caps them) and OpenBLAS's sgemm core (prefill).
    static var path: String {
        "\(Kernels.selection)"
    }

    /// llama.cpp's builds, as one line for the test output.
    static func describe(_ spread: Spread) -> String {
        spread.variants.map {
            "\($0.isa)/\($0.n_batch): \($0.steps_identical)/\($0.steps) steps, \($0.continuations_identical) continuations, parts at gaps ≤ \($0.largest_parting_gap), logits \(rounded($0.top5_logit_delta.mean))"
        }.joined(separator: "; ")
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

    @Test("at every step Baton picks llama.cpp's greedy token, except where llama.cpp's own builds also differ")
    func greedyMatchesLlamaCpp() throws {
        let fixture = try Self.fixture()
        let spread = fixture.llama_cpp_spread
        #expect(fixture.cases.filter { $0.kind == "raw" }.count >= 12)
        #expect(fixture.cases.filter { $0.kind == "chat" }.count >= 12)
        // The bounds rest on the spread of builds of other ISAs, not only of another batch size.
        #expect(Set(spread.variants.map(\.isa)).isSuperset(of: ["avx2", "scalar"]), "\(spread.variants.map(\.isa))")
        let flipBound = Self.noiseAllowance * spread.largest_flip_own_gap
        let meanBound = Self.noiseAllowance * spread.largest_mean_top5_logit_delta
        let p90Bound = Self.noiseAllowance * spread.largest_p90_top5_logit_delta
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 128)
        let prefill = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let decode = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 256)
        var steps = 0
        var misses: [String] = []
        var largestOwnGap = 0.0
        var identicalContinuations = 0
        var deltas: [Double] = []
        for (index, reference) in fixture.cases.enumerated() {
            #expect(reference.top2.count == reference.tokens.count + (reference.ended_with_eog ? 1 : 0))
            let sequence = cache.createSequence()
            defer { cache.free(sequence) }
            // Prompt on the prefill path, then the reference's own tokens on the decode path.
            var logits = try prefill.prefill(reference.prompt_tokens, sequence: sequence)
            var identical = true
            for (step, top2) in reference.top2.enumerated() {
                if step > 0 {
                    try decode.step([DecodeInput(sequence: sequence, token: reference.tokens[step - 1])])
                    logits = decode.logits(row: 0)
                }
                steps += 1
                // How far Baton's logits sit from the reference's, over its five best tokens (as the spread measures).
                deltas.append(stride(from: 0, to: reference.top5[step].count, by: 2).map { i in
                    abs(Double(logits[Int(reference.top5[step][i])]) - reference.top5[step][i + 1])
                }.max() ?? 0)
                let ours = argmax(logits)
                if ours == top2[0] { continue }
                identical = false
                // Baton's own margin for its pick over the reference's, the figure the spread's flip gap measures.
                let ourGap = Double(logits[Int(ours)] - logits[Int(top2[0])])
                largestOwnGap = max(largestOwnGap, ourGap)
                let theirGap = reference.deficit(of: ours, at: step)
                misses.append("case \(index) step \(step): gap \(Self.rounded(ourGap)) here, \(theirGap.map { "\(Self.rounded($0))" } ?? "> top 5") in the reference")
                #expect(
                    ourGap <= flipBound,
                    "case \(index) (\(reference.kind)) step \(step) on \(Self.path): Baton picks \(ours) over the reference's \(top2[0]) by \(ourGap), beyond \(Self.rounded(flipBound)) (\(Self.noiseAllowance) × llama.cpp's own largest \(spread.largest_flip_own_gap)); Baton's top 5: \(Self.top(logits, 5)), the reference's: \(reference.top5[step])")
            }
            if identical { identicalContinuations += 1 }
        }
        #expect(steps >= 500)
        let sorted = deltas.sorted()
        let mean = deltas.reduce(0, +) / Double(deltas.count), p90 = sorted[sorted.count * 9 / 10]
        #expect(
            mean <= meanBound && p90 <= p90Bound,
            "on \(Self.path): Baton's logits differ from the reference's by \(mean) on average (bound \(Self.rounded(meanBound))), p90 \(p90) (bound \(Self.rounded(p90Bound)))")
        // Reported for the record, per path; the test gates on the bounds.
        print("greedy agreement on \(Self.path): \(steps - misses.count)/\(steps) steps identical, \(identicalContinuations)/\(fixture.cases.count) continuations identical; where Baton picks another token its margin is ≤ \(Self.rounded(largestOwnGap)) (bound \(Self.rounded(flipBound))); logits differ from the reference's by \(Self.rounded(mean)) on average (bound \(Self.rounded(meanBound))), p90 \(Self.rounded(p90)) (bound \(Self.rounded(p90Bound))), max \(Self.rounded(sorted.last ?? 0)); misses: \(misses)")
        print("llama.cpp's own builds against the reference (\(spread.reference.isa)/\(spread.reference.n_batch)): \(Self.describe(spread))")
    }

    @Test("free-running greedy continuations equal llama.cpp's or part from it where llama.cpp's own builds part")
    func freeRunningContinuations() throws {
        let fixture = try Self.fixture()
        let bound = Self.noiseAllowance * fixture.llama_cpp_spread.largest_parting_gap
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 128)
        let prefill = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let decode = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 256)
        var identical = 0
        var largestGap = 0.0
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
            largestGap = max(largestGap, gap)
            divergences.append("case \(index) (\(reference.kind)) parts at step \(step), reference top-2 gap \(gap)")
            #expect(
                gap <= bound,
                "case \(index) (\(reference.kind)) on \(Self.path): Baton's continuation parts from the reference's at step \(step), where its top-2 gap \(gap) is beyond \(Self.rounded(bound)) (\(Self.noiseAllowance) × the largest at which llama.cpp's own builds part, \(fixture.llama_cpp_spread.largest_parting_gap))")
        }
        print("free-running on \(Self.path): \(identical)/\(fixture.cases.count) continuations identical to the reference's; Baton parts at reference top-2 gaps ≤ \(largestGap) (bound \(Self.rounded(bound))); \(divergences)")
    }
}
