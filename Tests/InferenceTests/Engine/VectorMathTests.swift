import CKernels
import Foundation
import Testing

@testable import Inference

/// The C exponential, softmax and SwiGLU behind `VectorMath` against libm `expf` definitions.
@Suite("Vector math")
struct VectorMathTests {
    @Test("exp is within 2 ulp of expf over the range softmax and SiLU use, on every ISA")
    func expMatchesLibm() {
        let isas = coveredISAs()
        var generator = SystemRandomNumberGenerator()
        var x = (0..<100_000).map { _ in Float.random(in: -87...88, using: &generator) }
        x += [0, -200, 200]
        for isa in isas {
            var y = [Float](repeating: .nan, count: x.count)
            bk_exp(isa, x, &y, x.count)
            for i in 0..<100_000 {
                let expected = expf(x[i])
                #expect(abs(y[i] - expected) <= 2 * expected.ulp, "ISA \(isaName(isa)) x = \(x[i])")
            }
            #expect(y[100_000] == 1)
            #expect(y[100_001] < 1e-37)
            #expect(y[100_002].isFinite)
        }
    }

    @Test("softmax matches the scalar definition for lengths around the vector width, on every ISA")
    func softmaxMatchesScalar() {
        let isas = coveredISAs()
        for isa in isas {
        for count in [1, 2, 7, 8, 9, 15, 16, 17, 33, 100, 1000] {
            let input = (0..<count).map { _ in Float.random(in: -30...30) }
            var ours = input
            bk_softmax(isa, &ours, count)
            let maximum = input.max()!
            let exps = input.map { Double(expf($0 - maximum)) }
            let total = exps.reduce(0, +)
            for i in 0..<count {
                #expect(abs(Double(ours[i]) - exps[i] / total) < 1e-6, "count \(count) index \(i)")
            }
            #expect(abs(ours.reduce(0, +) - 1) < 1e-5)
        }
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
