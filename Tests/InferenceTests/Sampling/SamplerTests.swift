import Generation
import Foundation
import Testing
@testable import Inference

@Suite("Sampler")
struct SamplerTests {
    /// Draws `count` tokens from fresh copies of `logits` and counts how often each id comes out.
    static func histogram(_ parameters: SamplingParameters, logits: [Float], count: Int) -> [Int32: Int] {
        var sampler = Sampler(parameters: parameters, vocabularySize: logits.count)
        var histogram: [Int32: Int] = [:]
        for _ in 0..<count {
            var copy = logits
            histogram[sampler.sample(logits: &copy).id, default: 0] += 1
        }
        return histogram
    }

    static func randomLogits(_ count: Int, seed: UInt64) -> [Float] {
        var rng = Xoshiro256StarStar(seed: seed)
        return (0..<count).map { _ in Float(rng.nextUnitInterval() * 20 - 10) }
    }

    /// log of a probability vector: softmax of these logits gives `probabilities` back.
    static func logits(probabilities: [Double]) -> [Float] { probabilities.map { Float(log($0)) } }

    @Test("temperature 0 picks the argmax, the lowest id among ties")
    func greedy() {
        for seed in 0..<20 as Range<UInt64> {
            var logits = Self.randomLogits(49_152, seed: seed)
            let expected = Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!)
            var sampler = Sampler(parameters: .greedy, vocabularySize: logits.count)
            #expect(sampler.sample(logits: &logits).id == expected)
        }
        var tied: [Float] = [1, 5, 3, 5, 5]
        var sampler = Sampler(parameters: .greedy, vocabularySize: 5)
        #expect(sampler.sample(logits: &tied).id == 1)
    }

    @Test("the same seed gives the same tokens; different seeds give different ones")
    func seeding() {
        let logits = Self.randomLogits(1000, seed: 5).map { $0 / 4 }
        func run(_ seed: UInt64?) -> ([Int32], UInt64) {
            var sampler = Sampler(parameters: SamplingParameters(temperature: 1, seed: seed), vocabularySize: 1000)
            let tokens = (0..<64).map { _ in
                var copy = logits
                return sampler.sample(logits: &copy).id
            }
            return (tokens, sampler.seed)
        }
        #expect(run(1234).0 == run(1234).0)
        #expect(run(1234).1 == 1234)
        #expect(run(1234).0 != run(1235).0)
        let (unseeded, drawnSeed) = run(nil)
        #expect(run(drawnSeed).0 == unseeded)
    }

    @Test("draws follow softmax(logits / temperature)")
    func temperatureDistribution() {
        let logits: [Float] = [0, Float(log(3.0))]  // p = 1/4, 3/4 at temperature 1
        let draws = 40_000
        let warm = Self.histogram(SamplingParameters(temperature: 1, seed: 1), logits: logits, count: draws)
        #expect(abs(Double(warm[1, default: 0]) / Double(draws) - 0.75) < 0.01)
        // At temperature 0.5 the odds square: 9 : 1.
        let cool = Self.histogram(SamplingParameters(temperature: 0.5, seed: 2), logits: logits, count: draws)
        #expect(abs(Double(cool[1, default: 0]) / Double(draws) - 0.9) < 0.01)
        // At temperature 2 the odds are √3 : 1.
        let hot = Self.histogram(SamplingParameters(temperature: 2, seed: 3), logits: logits, count: draws)
        #expect(abs(Double(hot[1, default: 0]) / Double(draws) - sqrt(3) / (1 + sqrt(3))) < 0.01)
    }

    @Test("top-k keeps only the k most likely tokens")
    func topK() {
        let logits = Self.randomLogits(5000, seed: 11).map { $0 / 5 }
        let ranked = logits.indices.sorted { logits[$0] > logits[$1] }.map(Int32.init)
        let histogram = Self.histogram(SamplingParameters(temperature: 2, topK: 5, seed: 4), logits: logits, count: 5000)
        #expect(Set(histogram.keys) == Set(ranked.prefix(5)))
        let one = Self.histogram(SamplingParameters(temperature: 2, topK: 1, seed: 4), logits: logits, count: 200)
        #expect(one == [ranked[0]: 200])
        // k at or above the vocabulary size means no truncation.
        let all = Self.histogram(SamplingParameters(temperature: 1, topK: 3, seed: 4), logits: [0, 0, 0], count: 600)
        #expect(all.count == 3)
    }

    @Test("top-p keeps the smallest set reaching p")
    func topP() {
        let logits = Self.logits(probabilities: [0.15, 0.5, 0.05, 0.3])
        let a = Self.histogram(SamplingParameters(topP: 0.75, seed: 5), logits: logits, count: 4000)
        #expect(Set(a.keys) == [1, 3])
        #expect(abs(Double(a[1, default: 0]) / 4000 - 0.625) < 0.03)
        let b = Self.histogram(SamplingParameters(topP: 0.85, seed: 5), logits: logits, count: 4000)
        #expect(Set(b.keys) == [0, 1, 3])
        let c = Self.histogram(SamplingParameters(topP: 0.4, seed: 5), logits: logits, count: 100)
        #expect(c == [1: 100])
    }

    @Test("top-p over a flat 49152-token vocabulary keeps the first half in id order")
    func topPLargeVocabulary() {
        let logits = [Float](repeating: 0, count: 49_152)
        let histogram = Self.histogram(SamplingParameters(topP: 0.5, seed: 6), logits: logits, count: 400)
        #expect(histogram.keys.allSatisfy { $0 < 24_576 })
        #expect(histogram.keys.contains { $0 > 20_000 })
    }

    @Test("min-p drops tokens below min_p times the top probability, sorted or not")
    func minP() {
        let logits = Self.logits(probabilities: [0.15, 0.5, 0.05, 0.3])
        let a = Self.histogram(SamplingParameters(minP: 0.2, seed: 7), logits: logits, count: 4000)
        #expect(Set(a.keys) == [0, 1, 3])
        let b = Self.histogram(SamplingParameters(minP: 0.7, seed: 7), logits: logits, count: 100)
        #expect(b == [1: 100])
        // Combined with top-k (the sorted path).
        let c = Self.histogram(SamplingParameters(topK: 3, minP: 0.35, seed: 7), logits: logits, count: 4000)
        #expect(Set(c.keys) == [1, 3])
        // Min-p is applied after the temperature: at T = 0.5, 0.3/0.5 becomes 0.36.
        let d = Self.histogram(SamplingParameters(temperature: 0.5, minP: 0.4, seed: 7), logits: logits, count: 400)
        #expect(d == [1: 400])
    }

    @Test("penalties are applied as llama.cpp does, over the last N tokens")
    func penalties() {
        let parameters = SamplingParameters(
            temperature: 0, repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25, penaltyLastN: 3)
        var sampler = Sampler(parameters: parameters, vocabularySize: 5)
        sampler.accept(contentsOf: [4, 0, 1, 0] as [Int32])  // 4 falls out of the window of 3
        var logits: [Float] = [2, -2, 1, 0.5, 3]
        let token = sampler.sample(logits: &logits)
        // 0: 2 / 2 − (2·0.5 + 0.25) = −0.25; 1: −2 · 2 − (0.5 + 0.25) = −4.75; 2, 3, 4 unchanged.
        #expect(logits == [-0.25, -4.75, 1, 0.5, 3])
        #expect(token.id == 4)
        // The sampled token entered the window (evicting the first 0).
        var next: [Float] = [2, -2, 1, 0.5, 3]
        _ = sampler.sample(logits: &next)
        let expectedNext: [Float] = [0.25, -4.75, 1, 0.5, 0.75]  // 2/2 − 0.75, …, 3/2 − 0.75
        #expect(next == expectedNext)

        var off = Sampler(parameters: SamplingParameters(temperature: 0, repetitionPenalty: 2, penaltyLastN: 0), vocabularySize: 3)
        off.accept(contentsOf: [0, 1, 2] as [Int32])
        var untouched: [Float] = [1, 2, 3]
        _ = off.sample(logits: &untouched)
        #expect(untouched == [1, 2, 3])

        var unbounded = Sampler(parameters: SamplingParameters(temperature: 0, frequencyPenalty: 1, penaltyLastN: -1), vocabularySize: 3)
        unbounded.accept(contentsOf: [Int32](repeating: 2, count: 500))
        var counted: [Float] = [0, 0, 0]
        #expect(unbounded.sample(logits: &counted).id == 0)
        #expect(counted == [0, 0, -500])
    }

    @Test("logit bias is added before anything else")
    func logitBias() {
        var logits: [Float] = [5, 1, 0, 2]
        var promote = Sampler(parameters: SamplingParameters(temperature: 0, logitBias: [2: 100, 7: 50]), vocabularySize: 4)
        #expect(promote.sample(logits: &logits).id == 2)
        #expect(logits == [5, 1, 100, 2])
        let banned = Self.histogram(SamplingParameters(temperature: 1, logitBias: [0: -100], seed: 8), logits: [5, 1, 0, 2], count: 2000)
        #expect(banned[0] == nil)
    }

    @Test("log-probabilities are the log-softmax of the biased, penalised logits at temperature 1")
    func logprobs() throws {
        let logits = Self.randomLogits(49_152, seed: 21)
        var copy = logits
        let parameters = SamplingParameters(temperature: 0.7, topK: 40, logitBias: [17: 30], seed: 9, logprobs: 5)
        var sampler = Sampler(parameters: parameters, vocabularySize: logits.count)
        let token = sampler.sample(logits: &copy)

        var processed = logits.map(Double.init)
        processed[17] += 30
        let maximum = processed.max()!
        let normaliser = maximum + log(processed.reduce(0) { $0 + exp($1 - maximum) })
        let expected = processed.enumerated().sorted { $0.element > $1.element }.prefix(5)
        #expect(token.topLogprobs.count == 5)
        #expect(token.topLogprobs[0].id == 17)
        for (alternative, (expectedID, expectedLogit)) in zip(token.topLogprobs, expected) {
            let (id, logprob) = (alternative.id, alternative.logprob)
            #expect(Int(id) == expectedID)
            #expect(abs(Double(logprob) - (expectedLogit - normaliser)) < 1e-4)
        }
        let chosen = try #require(token.logprob)
        #expect(abs(Double(chosen) - (processed[Int(token.id)] - normaliser)) < 1e-4)

        // Over a small vocabulary the probabilities sum to one.
        var small: [Float] = [0.5, -1, 2, 0]
        var all = Sampler(parameters: SamplingParameters(temperature: 0, logprobs: 4), vocabularySize: 4)
        let result = all.sample(logits: &small)
        #expect(abs(result.topLogprobs.map { exp(Double($0.logprob)) }.reduce(0, +) - 1) < 1e-6)
        #expect(result.topLogprobs.map(\.id) == [2, 0, 3, 1])
        #expect(result.logprob == result.topLogprobs[0].logprob)

        var chosenOnly = Sampler(parameters: SamplingParameters(temperature: 0, logprobs: 0), vocabularySize: 4)
        var four: [Float] = [0, 0, 0, 0]
        let onlyChosen = chosenOnly.sample(logits: &four)
        #expect(onlyChosen.topLogprobs.isEmpty)
        #expect(abs(Double(onlyChosen.logprob!) - log(0.25)) < 1e-6)
        var none = Sampler(parameters: .greedy, vocabularySize: 4)
        #expect(none.sample(logits: &four).logprob == nil)
    }

    @Test("NaN and infinite logits never crash and are never chosen over finite ones")
    func nonFiniteLogits() {
        for parameters in [SamplingParameters.greedy, SamplingParameters(seed: 1), SamplingParameters(topK: 2, topP: 0.9, minP: 0.1, seed: 1, logprobs: 2)] {
            var logits: [Float] = [.nan, -.infinity, 1, .nan, 0.5]
            var sampler = Sampler(parameters: parameters, vocabularySize: 5)
            let id = sampler.sample(logits: &logits).id
            #expect(id == 2 || id == 4)
            var impossible: [Float] = [-.infinity, -.infinity, .nan]
            #expect(sampler.sample(logits: &impossible).id == 0)
        }
    }

    @Test("the top-k selection agrees with a full sort on random logits")
    func selectionMatchesSort() {
        for seed in 0..<30 as Range<UInt64> {
            // Coarse values so ties are common and the id tie-break matters.
            let logits = Self.randomLogits(3000, seed: seed).map { ($0).rounded() }
            let k = 1 + Int(seed * 137 % 1000)  // both the small-k insertion path and the quickselect path (k > 256)
            let ranked = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            // Top-k then top-p with p tiny keeps exactly the first in the order.
            var copy = logits
            var sampler = Sampler(parameters: SamplingParameters(topK: k, topP: 1e-6, seed: seed), vocabularySize: 3000)
            #expect(sampler.sample(logits: &copy).id == Int32(ranked[0]))
            let histogram = Self.histogram(SamplingParameters(temperature: 2, topK: k, seed: seed), logits: logits, count: 300)
            #expect(Set(histogram.keys).isSubset(of: Set(ranked.prefix(k).map(Int32.init))))
        }
    }

    @Test("the bucketed top-p cut equals the cut found by sorting every weight")
    func topPCutMatchesSort() {
        for seed in 0..<24 as Range<UInt64> {
            let scale = Float(1 + seed % 8)
            var logits = Self.randomLogits(6000, seed: 100 + seed).map { ($0 * scale).rounded() / 4 }
            let topP = Float(0.05 + Double(seed % 19) * 0.05)
            var weights = [Float](repeating: 0, count: logits.count)
            let largest = logits.max()!
            let total = logits.withUnsafeMutableBufferPointer { l in
                weights.withUnsafeMutableBufferPointer { w in Sampler.sumOfExponentials(l, maximum: largest, inverseTemperature: 1, into: w) }
            }
            let target = Double(topP) * total
            let order = weights.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
            var cumulative: Double = 0
            var expected = order.last!
            for index in order {
                cumulative += Double(weights[index])
                if cumulative >= target {
                    expected = index
                    break
                }
            }
            var sampler = Sampler(parameters: SamplingParameters(topP: topP, seed: 1), vocabularySize: logits.count)
            let (cutWeight, cutID) = weights.withUnsafeMutableBufferPointer { sampler.topPCut($0, target: target) }
            #expect(cutWeight == weights[expected])
            #expect(Int(cutID) == expected, "seed \(seed), top_p \(topP)")
        }
    }
}
