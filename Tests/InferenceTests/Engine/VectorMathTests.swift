import Foundation
import Testing

@testable import Inference

/// The vectorizable exponential, softmax and SwiGLU against their plain scalar twins (libm `expf`).
@Suite("Vector math")
struct VectorMathTests {
    @Test("exp is within 2 ulp of expf over the range softmax and SiLU use")
    func expMatchesLibm() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let x = Float.random(in: -87...88, using: &generator)
            let expected = expf(x)
            #expect(abs(VectorMath.exp(x) - expected) <= 2 * expected.ulp, "x = \(x)")
        }
        #expect(VectorMath.exp(0) == 1)
        #expect(VectorMath.exp(-200) < 1e-37)
        #expect(VectorMath.exp(200).isFinite)
    }

    @Test("softmax matches the scalar definition for lengths around the vector width")
    func softmaxMatchesScalar() {
        for count in [1, 2, 15, 16, 17, 33, 100, 1000] {
            let input = (0..<count).map { _ in Float.random(in: -30...30) }
            var ours = input
            ours.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: count) }
            let maximum = input.max()!
            let exps = input.map { Double(expf($0 - maximum)) }
            let total = exps.reduce(0, +)
            for i in 0..<count {
                #expect(abs(Double(ours[i]) - exps[i] / total) < 1e-6, "count \(count) index \(i)")
            }
            #expect(abs(ours.reduce(0, +) - 1) < 1e-5)
        }
    }

    @Test("SwiGLU matches silu(gate)·up")
    func swigluMatchesScalar() {
        let gate = (0..<1537).map { _ in Float.random(in: -20...20) }
        let up = (0..<1537).map { _ in Float.random(in: -3...3) }
        var ours = gate
        ours.withUnsafeMutableBufferPointer { g in up.withUnsafeBufferPointer { VectorMath.swiglu(g.baseAddress!, $0.baseAddress!, count: 1537) } }
        for i in 0..<1537 {
            let expected = gate[i] / (1 + expf(-gate[i])) * up[i]
            #expect(abs(ours[i] - expected) <= 1e-5 * max(1, abs(expected)), "index \(i)")
        }
    }
}
