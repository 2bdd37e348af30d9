import CKernels
import Testing
@testable import Inference

@Suite("8-bit activation rounding for the f32 prefill path")
struct ActivationRoundingTests {
    @Test("every ISA rounds exactly like the scalar twin and like the decode path's quantized activations")
    func roundtripMatchesQuantizedActivations() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 7)
        let columns = 576, rows = 5
        var x = random.floats(columns * rows, scale: 4)
        // Exact ties (amax 127 makes the multiplier 1) and an all-zero block.
        x[0] = 127; x[1] = 2.5; x[2] = 3.5; x[3] = -2.5
        for i in 32..<64 { x[i] = 0 }
        var scalar = [Float](repeating: .nan, count: x.count)
        bk_q8_roundtrip(BK_ISA_SCALAR, x, &scalar, Int32(columns), Int32(rows))
        #expect(Array(scalar[0..<4]) == [127, 2, 4, -2])
        #expect(scalar[32..<64].allSatisfy { $0 == 0 })

        // The decode path's quantized blocks, dequantized, are what the roundtrip must produce.
        let scratch = KernelActivationScratch(columns: columns, batch: rows)
        bk_quantize_act(BK_ISA_SCALAR, BK_TYPE_Q4_1, x, Int32(columns), Int32(rows), scratch.pointer)
        for v in 0..<rows {
            for b in 0..<(columns / 32) {
                let block = scratch.block(vector: v, block: b)
                for j in 0..<32 {
                    let want = block.d * Float(block.qs[j])
                    #expect(scalar[v * columns + b * 32 + j] == want, "vector \(v) block \(b) element \(j)")
                }
            }
        }
        for isa in isas {
            var out = [Float](repeating: .nan, count: x.count)
            bk_q8_roundtrip(isa, x, &out, Int32(columns), Int32(rows))
            #expect(out.map(\.bitPattern) == scalar.map(\.bitPattern), "ISA \(isaName(isa))")
        }
    }
}
