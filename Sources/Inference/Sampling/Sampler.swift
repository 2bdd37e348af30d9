import Foundation
import Generation

/// Picks the next token from logits. Owns the PRNG state and the penalty history: one per sequence.
///
/// Order of operations on each call (llama.cpp's chain, with the temperature placed before top-p / min-p as in
/// the OpenAI API and Hugging Face):
/// 1. logit bias is added;
/// 2. repetition, frequency and presence penalties over the last `penaltyLastN` accepted tokens;
/// 3. log-probabilities, if requested, from the log-softmax of these logits (temperature 1, no truncation);
/// 4. temperature 0: argmax (ties to the lowest id) and stop; otherwise
/// 5. top-k, 6. softmax at the temperature, 7. top-p, 8. min-p (relative to the most likely token),
/// 9. a draw with xoshiro256** (the same seed gives the same tokens on every machine).
///
/// Ties everywhere are broken by the lower token id. The draw walks the kept tokens in probability order after
/// top-k, in id order otherwise (no full sort of the vocabulary: top-p finds its cut through a histogram), so a
/// seed reproduces tokens for the same parameters, not across different truncation settings. Softmax uses
/// `FastExp` (plain float arithmetic), so results do not depend on the platform's libm.
///
/// Buffers are sized once for the vocabulary and reused; a call allocates only the returned top-log-prob array.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    public let vocabularySize: Int
    /// The PRNG seed in use: `parameters.seed`, or the one drawn from the system when that was nil
    /// (report it so a run can be reproduced).
    public let seed: UInt64

    private var rng: Xoshiro256StarStar
    private var window: PenaltyWindow
    private let bias: [(token: Int32, value: Float)]
    private var candidates: [Candidate] = []
    private var topBuffer: [Candidate] = []
    private var weights: [Float] = []
    /// Weight buckets for top-p: float bits shifted right by this keep the exponent and 5 mantissa bits.
    static let bucketShift: UInt32 = 18
    /// Probability mass per bucket of weight float bits (`bitPattern >> bucketShift`; weights are ≤ 1).
    private var bucketMass = [Double](repeating: 0, count: Int(Float(1).bitPattern >> Self.bucketShift) + 1)

    struct Candidate: Sendable {
        var id: Int32
        /// The logit, then (after the softmax step) the unnormalised probability.
        var value: Float

        /// The total order used everywhere: larger value first, lower id first among equals.
        @inline(__always)
        func precedes(_ other: Candidate) -> Bool {
            value > other.value || (value == other.value && id < other.id)
        }
    }

    /// `parameters` should be `validated()`; out-of-vocabulary bias or history token ids are ignored. Without a
    /// seed one is drawn from the system (`seed` tells which).
    public init(parameters: SamplingParameters, vocabularySize: Int) {
        var system = SystemRandomNumberGenerator()
        let seed = parameters.seed ?? system.next()
        self.init(parameters: parameters, vocabularySize: vocabularySize, seed: seed, random: Xoshiro256StarStar(seed: seed))
    }

    /// The sampler of `state`'s generation as it stands after its generated tokens: the generator continues from
    /// `state.random` (or starts from the seed), and the penalty history holds the last tokens of prompt +
    /// generated, as an undisturbed run's does (the prompt is accepted first, then each draw records its token).
    public init(continuing state: GenerationState, vocabularySize: Int) {
        let parameters = state.request.sampling
        let seed = parameters.seed ?? 0
        self.init(
            parameters: parameters, vocabularySize: vocabularySize, seed: seed,
            random: state.random.map(Xoshiro256StarStar.init(state:)) ?? Xoshiro256StarStar(seed: seed))
        let history = parameters.penaltyLastN
        let prompt = state.request.prompt, generated = state.generated
        if history < 0 || history >= prompt.count + generated.count {
            accept(contentsOf: prompt)
            accept(contentsOf: generated)
        } else if history > generated.count {
            accept(contentsOf: prompt.suffix(history - generated.count))
            accept(contentsOf: generated)
        } else if history > 0 {
            accept(contentsOf: generated.suffix(history))
        }
    }

    private init(parameters: SamplingParameters, vocabularySize: Int, seed: UInt64, random: Xoshiro256StarStar) {
        self.parameters = parameters
        self.vocabularySize = max(vocabularySize, 1)
        self.seed = seed
        self.rng = random
        self.window = PenaltyWindow(length: parameters.penaltyLastN)
        self.bias = parameters.logitBias.sorted { $0.key < $1.key }.map { (token: $0.key, value: $0.value) }
        candidates.reserveCapacity(self.vocabularySize)
        topBuffer.reserveCapacity(SamplingParameters.maximumLogprobs + 1)
        weights = [Float](repeating: 0, count: self.vocabularySize)
    }

    /// Adds a token to the penalty history without sampling (e.g. the prompt, if penalties should see it;
    /// llama.cpp's server does this). `sample` records its own choice.
    public mutating func accept(_ token: Int32) {
        window.record(token)
    }

    /// Adds tokens to the penalty history in order.
    public mutating func accept(contentsOf tokens: some Sequence<Int32>) {
        for token in tokens { window.record(token) }
    }

    /// The generator's state now (what `GeneratedToken.random` carries after a draw).
    public var randomState: RandomState { rng.state }

    /// Chooses the next token from `logits` (one per vocabulary entry; `logits` must not be empty) and records
    /// it in the penalty history. Modifies `logits` in place: bias and penalties are applied to them.
    /// NaN logits are treated as -infinity. The result carries the generator's state after the draw (nil at
    /// temperature 0, which draws nothing).
    public mutating func sample(logits: UnsafeMutableBufferPointer<Float>) -> GeneratedToken {
        precondition(!logits.isEmpty, "Sampler.sample needs at least one logit")
        for (token, value) in bias where token >= 0 && Int(token) < logits.count {
            logits[Int(token)] += value
        }
        window.apply(
            to: logits, repetition: parameters.repetitionPenalty, frequency: parameters.frequencyPenalty,
            presence: parameters.presencePenalty)

        let greedy = parameters.temperature <= 0
        let chosen = greedy ? Self.argmax(logits) : draw(logits)
        var result = GeneratedToken(id: chosen, random: greedy ? nil : rng.state)
        if let count = parameters.logprobs {
            if weights.count < logits.count { weights = [Float](repeating: 0, count: logits.count) }
            let normaliser = weights.withUnsafeMutableBufferPointer { Self.logSumExp(logits, scratch: $0) }
            result.logprob = logits[Int(chosen)] - normaliser
            if count > 0 {
                result.topLogprobs = topTokens(logits, count: count).map { TokenLogprob(id: $0.id, logprob: $0.value - normaliser) }
            }
        }
        window.record(chosen)
        return result
    }

    /// `sample(logits:)` over an array (modified in place in the same way).
    public mutating func sample(logits: inout [Float]) -> GeneratedToken {
        logits.withUnsafeMutableBufferPointer { sample(logits: $0) }
    }

    // MARK: Steps

    /// The first index holding the largest logit (NaN ignored; 0 if every logit is NaN).
    static func argmax(_ logits: UnsafeMutableBufferPointer<Float>) -> Int32 {
        let largest = maximum(logits)
        return Int32(logits.firstIndex(of: largest) ?? 0)
    }

    /// The largest logit, NaN ignored (-infinity if there is none). Eight independent maxima so the loop
    /// vectorizes.
    static func maximum(_ logits: UnsafeMutableBufferPointer<Float>) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
        let count = logits.count
        var i = 0
        while i + 8 <= count {
            m0 = logits[i] > m0 ? logits[i] : m0
            m1 = logits[i + 1] > m1 ? logits[i + 1] : m1
            m2 = logits[i + 2] > m2 ? logits[i + 2] : m2
            m3 = logits[i + 3] > m3 ? logits[i + 3] : m3
            m4 = logits[i + 4] > m4 ? logits[i + 4] : m4
            m5 = logits[i + 5] > m5 ? logits[i + 5] : m5
            m6 = logits[i + 6] > m6 ? logits[i + 6] : m6
            m7 = logits[i + 7] > m7 ? logits[i + 7] : m7
            i += 8
        }
        var result = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
        while i < count {
            result = logits[i] > result ? logits[i] : result
            i += 1
        }
        return result
    }

    /// log Σ exp(logit), ignoring NaN; `scratch` (at least as long as `logits`) receives the terms.
    static func logSumExp(_ logits: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>) -> Float {
        let largest = maximum(logits)
        guard largest.isFinite else { return largest }
        let terms = UnsafeMutableBufferPointer(rebasing: scratch[0..<logits.count])
        return largest + Float(log(sumOfExponentials(logits, maximum: largest, inverseTemperature: 1, into: terms)))
    }

    /// Stores exp((logit − maximum) · inverseTemperature) for every logit in `weights` (same count; NaN → 0)
    /// and returns their sum. The loop vectorizes.
    static func sumOfExponentials(
        _ logits: UnsafeMutableBufferPointer<Float>, maximum: Float, inverseTemperature: Float,
        into weights: UnsafeMutableBufferPointer<Float>
    ) -> Double {
        let count = logits.count
        for i in 0..<count { weights[i] = FastExp.nonPositive((logits[i] - maximum) * inverseTemperature) }
        return sum(weights)
    }

    /// The `count` largest logits in the total order, most likely first (NaN skipped).
    private mutating func topTokens(_ logits: UnsafeMutableBufferPointer<Float>, count: Int) -> [Candidate] {
        Self.collectTop(logits, count: count, into: &topBuffer)
        return topBuffer
    }

    /// Keeps the `count` largest logits in `buffer`, in the total order. One pass, about one comparison per
    /// logit once the buffer is full: for small counts (top-k, top log-probs).
    static func collectTop(_ logits: UnsafeMutableBufferPointer<Float>, count: Int, into buffer: inout [Candidate]) {
        buffer.removeAll(keepingCapacity: true)
        guard count > 0 else { return }
        var floor = -Float.infinity
        var start = 0
        while start < logits.count {
            let end = min(start + 64, logits.count)
            defer { start = end }
            // Most chunks hold nothing above the current floor: skip them on their (vectorized) maximum.
            if buffer.count == count, !(maximum(UnsafeMutableBufferPointer(rebasing: logits[start..<end])) > floor) {
                continue
            }
            for index in start..<end {
                let value = logits[index]
                // Scanning in id order, an equal value never displaces an earlier (lower) id; NaN fails the test.
                if buffer.count == count, !(value > floor) { continue }
                if value.isNaN { continue }
                var position = buffer.count
                while position > 0, value > buffer[position - 1].value { position -= 1 }
                buffer.insert(Candidate(id: Int32(index), value: value), at: position)
                if buffer.count > count { buffer.removeLast() }
                if buffer.count == count { floor = buffer[count - 1].value }
            }
        }
    }

    /// Chooses a token at temperature > 0.
    private mutating func draw(_ logits: UnsafeMutableBufferPointer<Float>) -> Int32 {
        let topK = parameters.topK
        if topK > 0, topK < logits.count {
            return drawFromTopK(logits, k: topK)
        }
        return drawDense(logits)
    }

    /// Top-k path: the k candidates sorted in the total order, then softmax, top-p and min-p as prefixes.
    private mutating func drawFromTopK(_ logits: UnsafeMutableBufferPointer<Float>, k: Int) -> Int32 {
        if k <= 256 {
            Self.collectTop(logits, count: k, into: &candidates)
        } else {
            candidates.removeAll(keepingCapacity: true)
            for index in logits.indices {
                let value = logits[index]
                candidates.append(Candidate(id: Int32(index), value: value.isNaN ? -.infinity : value))
            }
            sortTop(k, of: candidates.count)
            candidates.removeSubrange(k...)
        }
        // Every logit NaN: collectTop kept nothing.
        guard let first = candidates.first, first.value > -.infinity else { return Self.argmax(logits) }
        let maximum = first.value
        let inverseTemperature = 1 / parameters.temperature
        var total: Double = 0
        for index in candidates.indices {
            let weight = FastExp.nonPositive((candidates[index].value - maximum) * inverseTemperature)
            candidates[index].value = weight
            total += Double(weight)
        }
        var count = candidates.count
        if parameters.topP < 1 {
            let target = Double(parameters.topP) * total
            var cumulative: Double = 0
            var cut = 0
            while cut < count {
                cumulative += Double(candidates[cut].value)
                cut += 1
                if cumulative >= target { break }
            }
            count = cut
        }
        if parameters.minP > 0 {
            // The most likely token has weight exactly 1, so the threshold is minP itself.
            var kept = 1
            while kept < count, candidates[kept].value >= parameters.minP { kept += 1 }
            count = kept
        }
        var keptTotal: Double = 0
        for index in 0..<count { keptTotal += Double(candidates[index].value) }
        let target = rng.nextUnitInterval() * keptTotal
        var cumulative: Double = 0
        for index in 0..<count {
            cumulative += Double(candidates[index].value)
            if target < cumulative { return candidates[index].id }
        }
        return candidates[count - 1].id
    }

    /// Whole-vocabulary path: weights for every token, top-p through a histogram of the weights (only the
    /// bucket holding the cut is sorted), min-p as a threshold, and a draw in id order.
    private mutating func drawDense(_ logits: UnsafeMutableBufferPointer<Float>) -> Int32 {
        let maximum = Self.maximum(logits)
        guard maximum > -.infinity else { return Self.argmax(logits) }
        let count = logits.count
        if weights.count < count { weights = [Float](repeating: 0, count: count) }
        let inverseTemperature = 1 / parameters.temperature
        let minimumWeight = parameters.minP
        let topP = parameters.topP
        // Borrow the buffer out of self so the closure below may call mutating methods.
        var storage: [Float] = []
        swap(&storage, &weights)
        defer { swap(&storage, &weights) }
        return storage.withUnsafeMutableBufferPointer { allWeights in
            let weights = UnsafeMutableBufferPointer(rebasing: allWeights[0..<count])
            let total = Self.sumOfExponentials(logits, maximum: maximum, inverseTemperature: inverseTemperature, into: weights)

            // Top-p as a cut in the total order: keep (w, id) iff w > cutWeight, or w == cutWeight and id ≤ cutID.
            var cutWeight: Float = -1
            var cutID = Int32.max
            if topP < 1 {
                (cutWeight, cutID) = topPCut(weights, target: Double(topP) * total)
            }
            var keptTotal = total
            if topP < 1 || minimumWeight > 0 {
                // Zero the weights outside the kept set (a select per element, vectorizes), then re-add.
                for index in 0..<count {
                    let weight = weights[index]
                    let kept = weight >= minimumWeight && (weight > cutWeight || (weight == cutWeight && Int32(index) <= cutID))
                    weights[index] = kept ? weight : 0
                }
                keptTotal = Self.sum(weights)
            }
            return Int32(Self.inverseCumulative(weights, target: rng.nextUnitInterval() * keptTotal))
        }
    }

    /// Σ weights, in eight float lanes combined in double.
    static func sum(_ weights: UnsafeMutableBufferPointer<Float>) -> Double {
        let count = weights.count
        var lanes = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= count {
            lanes += SIMD8<Float>(
                weights[i], weights[i + 1], weights[i + 2], weights[i + 3],
                weights[i + 4], weights[i + 5], weights[i + 6], weights[i + 7])
            i += 8
        }
        var total: Double = 0
        for lane in 0..<8 { total += Double(lanes[lane]) }
        while i < count {
            total += Double(weights[i])
            i += 1
        }
        return total
    }

    /// The first index at which the running sum of `weights` exceeds `target` (the last non-zero weight if
    /// rounding leaves the target out of reach). Skips whole chunks of 64 by their sums.
    static func inverseCumulative(_ weights: UnsafeMutableBufferPointer<Float>, target: Double) -> Int {
        let count = weights.count
        var cumulative: Double = 0
        var lastNonZero = 0
        var start = 0
        while start < count {
            let end = min(start + 64, count)
            let chunk = UnsafeMutableBufferPointer(rebasing: weights[start..<end])
            let chunkSum = sum(chunk)
            if chunkSum > 0 {
                if target < cumulative + chunkSum {
                    for index in start..<end where weights[index] > 0 {
                        cumulative += Double(weights[index])
                        lastNonZero = index
                        if target < cumulative { return index }
                    }
                } else {
                    cumulative += chunkSum
                    lastNonZero = (start..<end).last { weights[$0] > 0 } ?? lastNonZero
                }
            }
            start = end
        }
        return lastNonZero
    }

    /// The last (weight, id) inside the top-p set: the smallest prefix of the total order whose weights reach
    /// `target`. Buckets of the weight's float bits (32 per octave) find the bucket holding the cut; only that
    /// bucket is sorted. Weights below 2^-20 share one tail bucket.
    mutating func topPCut(
        _ weights: UnsafeMutableBufferPointer<Float>, target: Double
    ) -> (Float, Int32) {
        let tinyWeight: Float = 0x1p-20
        let tailKey = Int(tinyWeight.bitPattern >> Self.bucketShift) - 1
        for key in bucketMass.indices { bucketMass[key] = 0 }
        for index in weights.indices where weights[index] >= tinyWeight {
            let weight = weights[index]
            bucketMass[Int(weight.bitPattern >> Self.bucketShift)] += Double(weight)
        }
        var before: Double = 0
        var boundary = tailKey
        for key in stride(from: bucketMass.count - 1, to: tailKey, by: -1) where bucketMass[key] > 0 {
            if before + bucketMass[key] >= target {
                boundary = key
                break
            }
            before += bucketMass[key]
        }
        candidates.removeAll(keepingCapacity: true)
        for index in weights.indices {
            let weight = weights[index]
            let key = weight >= tinyWeight ? Int(weight.bitPattern >> Self.bucketShift) : tailKey
            if key == boundary { candidates.append(Candidate(id: Int32(index), value: weight)) }
        }
        candidates.sort { $0.precedes($1) }
        var cumulative = before
        for candidate in candidates {
            cumulative += Double(candidate.value)
            if cumulative >= target { return (candidate.value, candidate.id) }
        }
        // Rounding left the target just out of reach: keep the whole boundary bucket.
        return candidates.last.map { ($0.value, $0.id) } ?? (-1, .max)
    }

    /// Rearranges `candidates[0..<end]` so that its first `k` entries are its `k` first in the total order,
    /// sorted (quickselect, then a sort of the prefix).
    private mutating func sortTop(_ k: Int, of end: Int) {
        guard k > 0 else { return }
        if k < end {
            var low = 0
            var high = end - 1
            let target = k - 1
            while low < high {
                let middle = low + (high - low) / 2
                // Median of three as the pivot, for deterministic, usually balanced partitions.
                if candidates[middle].precedes(candidates[low]) { candidates.swapAt(middle, low) }
                if candidates[high].precedes(candidates[low]) { candidates.swapAt(high, low) }
                if candidates[high].precedes(candidates[middle]) { candidates.swapAt(high, middle) }
                let pivot = candidates[middle]
                var i = low
                var j = high
                while i <= j {
                    while candidates[i].precedes(pivot) { i += 1 }
                    while pivot.precedes(candidates[j]) { j -= 1 }
                    if i <= j {
                        candidates.swapAt(i, j)
                        i += 1
                        j -= 1
                    }
                }
                if target <= j {
                    high = j
                } else if target >= i {
                    low = i
                } else {
                    break
                }
            }
        }
        candidates[0..<k].sort { $0.precedes($1) }
    }
}
