import CKernels

/// Row-wise math of the forward pass written so the loop vectorizer turns it into SIMD code: the C library's
/// `expf` is a call per element, and it dominates softmax and SiLU.
enum VectorMath {
    /// e^x within ~2 ulp of `expf` (Cephes' polynomial after range reduction by ln 2); branch-free so loops
    /// over it vectorize. Inputs below -87.3 give ~0, above 88.37 saturate at ~1.7e38.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let low: Float = -87.33654, high: Float = 88.37
        let x = x < low ? low : (x > high ? high : x)
        // n = round(x / ln 2) via the 1.5·2^23 trick, which also leaves n in the low mantissa bits.
        let magic: Float = 12_582_912
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p: Float = 1.987_569_15e-4
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.334_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        // 2^n: n (the low bits of `shifted`) moved into the exponent field.
        let exponent = (shifted.bitPattern &- magic.bitPattern &+ 127) &<< 23
        return p * Float(bitPattern: exponent)
    }

    /// In-place softmax of `x[0..<count]`.
    static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // Sixteen running maxima/sums let the compiler keep them in one vector register.
        var maxima = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= count {
            for lane in 0..<16 { maxima[lane] = x[i + lane] > maxima[lane] ? x[i + lane] : maxima[lane] }
            i += 16
        }
        var maximum = -Float.infinity
        for lane in 0..<16 { maximum = maxima[lane] > maximum ? maxima[lane] : maximum }
        while i < count {
            maximum = x[i] > maximum ? x[i] : maximum
            i += 1
        }
        for j in 0..<count { x[j] = exp(x[j] - maximum) }
        var sums = SIMD16<Float>(repeating: 0)
        i = 0
        while i + 16 <= count {
            for lane in 0..<16 { sums[lane] += x[i + lane] }
            i += 16
        }
        var sum = sums.sum()
        while i < count {
            sum += x[i]
            i += 1
        }
        let inverse = 1 / sum
        for j in 0..<count { x[j] *= inverse }
    }

    /// gate = silu(gate) ⊙ up, with silu(z) = z / (1 + e^(-z)).
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        // In C, sixteen lanes at a time: this loop over `exp` did not vectorize in Swift.
        bk_swiglu(Kernels.isa, gate, up, count)
    }
}
