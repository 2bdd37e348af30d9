import CKernels
import Foundation

/// Row-wise math of the forward pass, in C (CKernels' `vector.c`): loops over `exp` do not vectorize in Swift,
/// and the C library's `expf` is a call per element.
enum VectorMath {
    /// In-place softmax of `x[0..<count]`.
    static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        bk_softmax(Kernels.isa, x, count)
    }

    /// gate = silu(gate) ⊙ up, with silu(z) = z / (1 + e^(-z)).
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        bk_swiglu(Kernels.isa, gate, up, count)
    }

    /// gate = gelu(gate) ⊙ up as ggml's CPU backend computes it (`ggml_vec_geglu_f32` with `GGML_GELU_FP16`):
    /// z ≤ -10 gives 0 and z ≥ 10 gives z; in between, gelu(z) = ½z(1 + tanh(√(2/π)(z + 0.044715z³))) is read from
    /// a table over every f16 value, at z rounded to f16, and the result is itself an f16 value.
    static func geglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        let chunk = 256
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: chunk) { halves in
            geluTable.withUnsafeBufferPointer { table in
                var start = 0
                while start < count {
                    let length = min(chunk, count - start)
                    Kernels.convertToF16(gate + start, halves.baseAddress!, count: length)
                    for i in 0..<length {
                        let z = gate[start + i]
                        let g: Float = z <= -10 ? 0 : (z >= 10 ? z : table[Int(halves[i])])
                        gate[start + i] = g * up[start + i]
                    }
                    start += length
                }
            }
        }
    }

    /// gelu of every f16 value (by bit pattern), rounded to f16 and back, as ggml's `ggml_table_gelu_f16`.
    static let geluTable: [Float] = (0..<65_536).map { bits in
        let z = bk_f16_to_f32(UInt16(bits))
        let gelu = 0.5 * z * (1 + tanhf(0.797_884_560_802_865_355_879_892_119_868_763_7 * z * (1 + 0.044715 * z * z)))
        return bk_f16_to_f32(bk_f32_to_f16(gelu))
    }
}
