import Generation

/// The xoshiro256** generator (Blackman & Vigna), seeded through splitmix64: the same seed gives the same
/// sequence on every machine and Swift version, which `SystemRandomNumberGenerator` cannot promise.
/// Not cryptographically secure.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable, Equatable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// Expands `seed` into the 256-bit state with splitmix64 (as the xoshiro authors recommend), so every seed,
    /// 0 included, gives a valid non-zero state.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix()
        s1 = splitmix()
        s2 = splitmix()
        s3 = splitmix()
    }

    /// Continues from a state another generator reached (`state`).
    public init(state: RandomState) {
        (s0, s1, s2, s3) = (state.s0, state.s1, state.s2, state.s3)
    }

    /// The generator's whole state: a generator made from it draws what this one would draw next.
    public var state: RandomState { RandomState(s0, s1, s2, s3) }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    /// A uniform double in [0, 1) from the top 53 bits of the next output.
    public mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
