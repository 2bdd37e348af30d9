/// exp(x) for the sampler: ~2 ulp, branch-free (auto-vectorizes), and made of plain float operations only, so
/// it gives the same bits on every machine (unlike libm's `expf`), which keeps seeded sampling reproducible.
enum FastExp {
    /// Below this, exp(x) is treated as 0 (the true value, < 1.7e-38, is negligible as a probability weight).
    static let lowerLimit: Float = -87

    /// e^x for x ≤ 0; returns 0 for x < `lowerLimit`, -infinity and NaN.
    @inline(__always)
    static func nonPositive(_ x: Float) -> Float {
        let inRange = x >= lowerLimit  // false for NaN
        let clamped = inRange ? min(x, 0) : 0
        // x = k·ln2 + r, |r| ≤ ln2/2; ln2 split in two (Cody–Waite) so k·ln2 is exact enough.
        // Adding 1.5·2^23 rounds to an integer (ties to even) and leaves it in the low mantissa bits: no
        // rounding or conversion instruction (which baseline x86-64 lacks), no trapping conversion.
        let shifted = clamped * 1.442_695_04 + 12_582_912
        let k = shifted - 12_582_912
        let r = clamped - k * 0.693_145_751_953_125 - k * 1.428_606_765_330_187e-6
        // Taylor series to degree 6: error < 1.3e-7 on |r| ≤ 0.347.
        var p: Float = 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let exponent = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000 &+ 127
        let scale = Float(bitPattern: UInt32(bitPattern: exponent &<< 23))
        return inRange ? p * scale : 0
    }
}
