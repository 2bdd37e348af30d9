/// Occurrence counts of the last N accepted tokens, kept incrementally (a ring of token ids plus a count per
/// distinct token) so applying penalties costs O(distinct tokens in the window), not O(N), per step.
struct PenaltyWindow: Sendable {
    /// Window length; 0 = off, -1 = unbounded.
    let length: Int
    private var ring: [Int32] = []
    private var oldest = 0
    private(set) var counts: [Int32: Int32] = [:]

    init(length: Int) {
        self.length = length
        if length > 0 {
            ring.reserveCapacity(length)
            counts.reserveCapacity(length)
        }
    }

    mutating func record(_ token: Int32) {
        guard length != 0 else { return }
        if length > 0 {
            if ring.count < length {
                ring.append(token)
            } else {
                let evicted = ring[oldest]
                ring[oldest] = token
                oldest = (oldest + 1) % length
                if let count = counts[evicted], count > 1 {
                    counts[evicted] = count - 1
                } else {
                    counts[evicted] = nil
                }
            }
        }
        counts[token, default: 0] += 1
    }

    /// Applies the penalties as llama.cpp does: for every token in the window, a positive logit is divided by
    /// `repetition` and a non-positive one multiplied by it, then `count * frequency + presence` is subtracted.
    /// Token ids outside `logits` are ignored.
    func apply(
        to logits: UnsafeMutableBufferPointer<Float>, repetition: Float, frequency: Float, presence: Float
    ) {
        guard length != 0, repetition != 1 || frequency != 0 || presence != 0 else { return }
        for (token, count) in counts where token >= 0 && Int(token) < logits.count {
            var logit = logits[Int(token)]
            if repetition != 1 {
                logit = logit <= 0 ? logit * repetition : logit / repetition
            }
            logit -= Float(count) * frequency + presence
            logits[Int(token)] = logit
        }
    }
}
