import Foundation
import CKernels
import Testing
@testable import Inference

@Suite("f16 and vector kernels")
struct VectorKernelTests {
    static let allHalfPatterns: [UInt16] = (0...UInt16.max).map { $0 }

    @Test("f16 → f32 is exact for every bit pattern, on every ISA")
    func f16ToF32Exact() {
        let isas = coveredISAs()
        for isa in isas {
            var out = [Float](repeating: 0, count: 65536)
            bk_convert_f16_to_f32(isa, Self.allHalfPatterns, &out, 65536)
            for h in Self.allHalfPatterns {
                let want = Float(Float16(bitPattern: h))
                let got = out[Int(h)]
                if want.isNaN {
                    #expect(got.isNaN, "pattern \(h) ISA \(isaName(isa))")
                } else {
                    #expect(got.bitPattern == want.bitPattern, "pattern \(h) ISA \(isaName(isa))")
                }
            }
        }
    }

    @Test("f16 → f32 → f16 round-trips every pattern; NaNs stay NaN and come back quiet")
    func roundTrip() {
        let isas = coveredISAs()
        for isa in isas {
            var floats = [Float](repeating: 0, count: 65536)
            var back = [UInt16](repeating: 0, count: 65536)
            bk_convert_f16_to_f32(isa, Self.allHalfPatterns, &floats, 65536)
            bk_convert_f32_to_f16(isa, floats, &back, 65536)
            for h in Self.allHalfPatterns {
                let isNaN = h & 0x7C00 == 0x7C00 && h & 0x03FF != 0
                if isNaN {
                    #expect(back[Int(h)] == h | 0x0200, "NaN pattern \(h) ISA \(isaName(isa))")
                } else {
                    #expect(back[Int(h)] == h, "pattern \(h) ISA \(isaName(isa))")
                }
            }
        }
    }

    @Test("f32 → f16 rounds to nearest even like Float16, including subnormals, overflow and NaN")
    func f32ToF16Rounding() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 11)
        var inputs: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e9, .infinity, -.infinity, .nan,
                               5.96e-8, 2.98e-8, 2.9802326e-8, 2.9802328e-8, 6.1e-5, 6.097e-5, 1e-10, -3e-6,
                               Float.leastNonzeroMagnitude, 0.1, 1.0009765625, 1.00048828125, 1.00146484375]
        // Random magnitudes across the whole f16 range, subnormals included.
        for _ in 0..<20_000 {
            let exponent = Float(Int(random.next() % 40) - 28)
            inputs.append(random.float() * Float(sign: .plus, exponent: Int(exponent), significand: 1))
        }
        // Exact halfway points between neighbouring halves.
        for h in stride(from: UInt16(0), to: 0x7BFF, by: 37) {
            let a = Float(Float16(bitPattern: h)), b = Float(Float16(bitPattern: h + 1))
            inputs.append((a + b) / 2)
        }
        for isa in isas {
            var out = [UInt16](repeating: 0, count: inputs.count)
            bk_convert_f32_to_f16(isa, inputs, &out, inputs.count)
            for (i, x) in inputs.enumerated() {
                if x.isNaN {
                    #expect(Float16(bitPattern: out[i]).isNaN, "NaN ISA \(isaName(isa))")
                } else {
                    #expect(out[i] == Float16(x).bitPattern, "\(x) ISA \(isaName(isa)): \(out[i]) vs \(Float16(x).bitPattern)")
                }
                #expect(out[i] == bk_f32_to_f16(x), "SIMD vs scalar twin, \(x) ISA \(isaName(isa))")
            }
        }
    }

    static let counts = [0, 1, 7, 15, 16, 17, 33, 64, 100, 1000, 1537]

    @Test("dot and axpy (f32 and f16) match their scalar twins on every ISA")
    func vectorOpsMatchScalar() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 12)
        for n in Self.counts {
            let a = random.floats(n), b = random.floats(n)
            var bh = [UInt16](repeating: 0, count: n)
            bk_convert_f32_to_f16(BK_ISA_SCALAR, b, &bh, n)
            let magnitude = zip(a, b).reduce(Float(0)) { $0 + abs($1.0 * $1.1) }
            let tolerance = Float(n + 4) * Float.ulpOfOne * magnitude
            let dot = bk_dot_f32(BK_ISA_SCALAR, a, b, n)
            let dotH = bk_dot_f16(BK_ISA_SCALAR, a, bh, n)
            let y0 = random.floats(n)
            var axpy = y0, axpyH = y0
            bk_axpy_f32(BK_ISA_SCALAR, 0.75, a, &axpy, n)
            bk_axpy_f16(BK_ISA_SCALAR, 0.75, bh, &axpyH, n)
            for isa in isas where isa != BK_ISA_SCALAR {
                #expect(abs(bk_dot_f32(isa, a, b, n) - dot) <= tolerance, "dot n \(n) ISA \(isaName(isa))")
                #expect(abs(bk_dot_f16(isa, a, bh, n) - dotH) <= tolerance + Float(n) * 1e-3 * Float.ulpOfOne, "dotF16 n \(n) ISA \(isaName(isa))")
                var y = y0, yh = y0
                bk_axpy_f32(isa, 0.75, a, &y, n)
                bk_axpy_f16(isa, 0.75, bh, &yh, n)
                for i in 0..<n {
                    // Fused multiply-add vs separate rounding: within one ulp-ish of the operands.
                    #expect(abs(y[i] - axpy[i]) <= 2 * Float.ulpOfOne * (abs(y0[i]) + 1), "axpy n \(n) i \(i) ISA \(isaName(isa))")
                    #expect(abs(yh[i] - axpyH[i]) <= 2 * Float.ulpOfOne * (abs(y0[i]) + 1), "axpyF16 n \(n) i \(i) ISA \(isaName(isa))")
                }
            }
            // And the public wrappers agree with an exact reference.
            var exact = 0.0
            for i in 0..<n { exact += Double(a[i]) * Double(b[i]) }
            #expect(abs(Double(Kernels.dot(a, b, count: n)) - exact) <= Double(tolerance) + 1e-30)
        }
    }

    @Test("the public f16 wrappers convert and accumulate")
    func publicWrappers() {
        let x: [Float] = [1, -2, 0.5, 65504, 1e-7, 3]
        var h = [UInt16](repeating: 0, count: x.count)
        Kernels.convertToF16(x, &h, count: x.count)
        #expect(h == x.map { Float16($0).bitPattern })
        var back = [Float](repeating: 0, count: x.count)
        Kernels.convertFromF16(h, &back, count: x.count)
        #expect(back == x.map { Float(Float16($0)) })
        let ones = [Float](repeating: 1, count: x.count)
        #expect(Kernels.dotF16(ones, h, count: x.count) == back.reduce(0, +))
        var y = [Float](repeating: 1, count: x.count)
        Kernels.axpyF16(2, h, &y, count: x.count)
        #expect(y == back.map { 1 + 2 * $0 })
        var z = [Float](repeating: 0, count: 3)
        Kernels.axpy(-1, [1, 2, 3], &z, count: 3)
        #expect(z == [-1, -2, -3])
        #expect(Kernels.dotF16(ones, h, count: 0) == 0)
    }

    @Test("SwiGLU matches its scalar twin on every ISA and silu·up in double precision")
    func swiglu() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 31)
        for n in [0, 1, 7, 8, 15, 16, 17, 100, 1536] {
            var gate = random.floats(n, scale: 12)
            if n > 3 { gate[0] = -100; gate[1] = 95; gate[2] = 0 }  // past both clamps, and zero
            let up = random.floats(n, scale: 3)
            var scalar = gate
            bk_swiglu(BK_ISA_SCALAR, &scalar, up, n)
            for i in 0..<n {
                let z = Double(gate[i])
                let want = z / (1 + Foundation.exp(-z)) * Double(up[i])
                #expect(abs(Double(scalar[i]) - want) <= 1e-6 * max(1, abs(want)), "n \(n) element \(i): \(scalar[i]) vs \(want)")
            }
            for isa in isas {
                var got = gate
                bk_swiglu(isa, &got, up, n)
                for i in 0..<n {
                    #expect(abs(got[i] - scalar[i]) <= 4 * scalar[i].ulp, "ISA \(isaName(isa)) n \(n) element \(i): \(got[i]) vs \(scalar[i])")
                }
            }
        }
    }

    @Test("RMSNorm gives the same bits on every ISA and matches a double-precision norm")
    func rmsNorm() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 33)
        for n in [1, 7, 8, 9, 16, 17, 576, 2048] {
            let x = random.floats(n, scale: 40), gain = random.floats(n, scale: 2)
            var scalar = [Float](repeating: .nan, count: n)
            bk_rms_norm(BK_ISA_SCALAR, x, gain, 1e-5, &scalar, n)
            let mean = x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n)
            let inverse = 1 / (mean + 1e-5).squareRoot()
            for i in 0..<n {
                let want = Double(x[i]) * inverse * Double(gain[i])
                #expect(abs(Double(scalar[i]) - want) <= 1e-6 * max(1, abs(want)), "n \(n) element \(i): \(scalar[i]) vs \(want)")
            }
            for isa in isas {
                var got = [Float](repeating: .nan, count: n)
                bk_rms_norm(isa, x, gain, 1e-5, &got, n)
                #expect(got.map(\.bitPattern) == scalar.map(\.bitPattern), "ISA \(isaName(isa)) n \(n)")
                // In place (y = x) gives the same.
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { bk_rms_norm(isa, $0.baseAddress!, gain, 1e-5, $0.baseAddress!, n) }
                #expect(inPlace.map(\.bitPattern) == scalar.map(\.bitPattern), "ISA \(isaName(isa)) n \(n) in place")
            }
        }
        // All zeros: the epsilon keeps it finite.
        var zeros = [Float](repeating: 1, count: 64)
        bk_rms_norm(Kernels.isa, [Float](repeating: 0, count: 64), [Float](repeating: 1, count: 64), 1e-5, &zeros, 64)
        #expect(zeros.allSatisfy { $0 == 0 })
    }

    @Test("argmax finds the first largest element on every ISA, skipping NaNs")
    func argmax() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 32)
        var cases: [[Float]] = [[], [3], [.nan, .nan], [-.infinity, -.infinity, -.infinity], [1, 5, 5, 2]]
        for n in [15, 16, 17, 31, 100, 49_152] { cases.append(random.floats(n)) }
        var ties = random.floats(1000)
        ties[900] = 7; ties[37] = 7; ties[512] = 7  // first of three equal maxima, in different lanes
        cases.append(ties)
        var withNaN = random.floats(64)
        withNaN[3] = .nan; withNaN[40] = 2; withNaN[41] = .nan
        cases.append(withNaN)
        var tail = random.floats(35)
        tail[34] = 9  // the maximum in the scalar tail
        cases.append(tail)
        var allNegativeInfinity = [Float](repeating: -.infinity, count: 40)
        allNegativeInfinity[20] = .nan
        cases.append(allNegativeInfinity)
        for x in cases {
            var want = 0
            var value = -Float.infinity
            for (i, v) in x.enumerated() where v > value { want = i; value = v }
            for isa in isas {
                #expect(bk_argmax(isa, x, x.count) == want, "ISA \(isaName(isa)), \(x.count) elements")
            }
        }
    }
}
