import CKernels

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
}
