import Foundation
import Testing
@testable import Inference

@Suite("Fast exponential")
struct FastExpTests {
    @Test("matches exp within 3e-7 relative error on [-87, 0]")
    func accuracy() {
        var worst: Double = 0
        var x: Float = -87
        while x <= 0 {
            let expected = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(FastExp.nonPositive(x)) - expected) / expected)
            x += 0.003_17
        }
        for x: Float in [0, -0.0, -1e-30, -0.346_573_6, -0.346_573_7, -86.999] {
            let expected = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(FastExp.nonPositive(x)) - expected) / expected)
        }
        #expect(worst < 3e-7)
        #expect(FastExp.nonPositive(0) == 1)
    }

    @Test("is zero below the limit, for -infinity and for NaN")
    func outOfRange() {
        #expect(FastExp.nonPositive(-87.5) == 0)
        #expect(FastExp.nonPositive(-.infinity) == 0)
        #expect(FastExp.nonPositive(.nan) == 0)
        #expect(FastExp.nonPositive(-Float.greatestFiniteMagnitude) == 0)
    }
}
