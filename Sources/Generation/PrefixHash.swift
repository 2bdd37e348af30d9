/// The chained hash that names a full KV block of a prompt by its token ids: the key of every worker's prefix
/// cache index, of the KV events workers publish, and of the routers' index that scores candidates by what they
/// hold. One implementation, so that a router computes from token ids exactly what a worker's cache stored.
///
/// Block `b` of a sequence (tokens `b·blockSize ..< (b+1)·blockSize`) hashes its parent block's hash (0 for the
/// first), a namespace (how the KV was computed: `PromptPath.prefixNamespace`) and its tokens with splitmix64
/// steps: the same on every machine. A hash only *names* content; a cache confirms a match against the tokens.
public enum PrefixHash {
    /// The hash of one full block after a parent block hashed `parent` (0 for a sequence's first block).
    public static func block(parent: UInt64, namespace: UInt64, tokens: some Collection<Int32>) -> UInt64 {
        var hash = mix(parent ^ mix(namespace))
        for token in tokens { hash = mix(hash ^ UInt64(UInt32(bitPattern: token))) }
        return hash
    }

    /// The hashes of every full block of `tokens` (a trailing partial block has none), each chained on the one
    /// before, all under `namespace`. `blockSize` must be at least 1 (else there are none).
    public static func chain(_ tokens: [Int32], blockSize: Int, namespace: UInt64) -> [UInt64] {
        guard blockSize >= 1 else { return [] }
        var hashes: [UInt64] = []
        hashes.reserveCapacity(tokens.count / blockSize)
        var parent: UInt64 = 0
        for index in 0..<(tokens.count / blockSize) {
            parent = block(parent: parent, namespace: namespace, tokens: tokens[(index * blockSize)..<((index + 1) * blockSize)])
            hashes.append(parent)
        }
        return hashes
    }

    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension PromptPath {
    /// How KV computed on this path is entered in a cache's prefix index: blocks computed one way never stand in
    /// for another (the paths round differently).
    public var prefixNamespace: UInt64 {
        switch self {
        case .prefill: 1
        case .decode: 2
        }
    }

    /// Blocks holding prompt positions from the prefill path and generated ones from decode steps: nothing adopts them.
    public static let mixedPrefixNamespace: UInt64 = 3
}
