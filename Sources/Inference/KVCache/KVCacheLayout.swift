/// The element type the KV cache stores keys and values in.
public enum KVDataType: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// IEEE half precision (the default: half the memory and transfer bytes of f32).
    case f16
    /// IEEE single precision.
    case f32

    /// Bytes per stored element.
    public var byteWidth: Int {
        switch self {
        case .f16: 2
        case .f32: 4
        }
    }

    /// The code used in the binary descriptor header (`KVSequenceDescriptor.encoded()`).
    var wireCode: UInt32 {
        switch self {
        case .f16: 0
        case .f32: 1
        }
    }

    init?(wireCode: UInt32) {
        switch wireCode {
        case 0: self = .f16
        case 1: self = .f32
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// The shape of a paged KV cache. Two caches can exchange sequences only if their layouts are equal.
///
/// One (layer, block) slice holds `layerBlockElements` elements: the K part `K[kvHead][slot][headDim]`
/// followed by the V part `V[kvHead][slot][headDim]`, with `slot` in `0..<blockSize`.
public struct KVCacheLayout: Sendable, Equatable, Hashable, Codable {
    /// Transformer layers (one K/V pair per layer).
    public var layers: Int
    /// Key/value heads per layer (grouped-query attention: usually fewer than query heads).
    public var kvHeads: Int
    /// Elements per head vector.
    public var headDim: Int
    /// Tokens per block (16 by default).
    public var blockSize: Int
    /// Element type of the stored keys and values.
    public var dataType: KVDataType
    /// Identifies the model (weights and architecture) that produced the KV; the engine computes it.
    /// Import refuses a sequence whose fingerprint differs.
    public var modelFingerprint: String

    /// Upper bounds that `validate()` and the descriptor decoder enforce, so a hostile or corrupt header
    /// cannot make a receiver allocate absurd amounts of memory.
    public static let maximumLayers = 4096
    public static let maximumKVHeads = 4096
    public static let maximumHeadDim = 65_536
    public static let maximumBlockSize = 65_536
    public static let maximumFingerprintBytes = 4096
    /// One layer-block slice may not exceed 1 GiB.
    public static let maximumLayerBlockBytes = 1 << 30

    public init(
        layers: Int, kvHeads: Int, headDim: Int, blockSize: Int = 16, dataType: KVDataType = .f16,
        modelFingerprint: String = ""
    ) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.blockSize = blockSize
        self.dataType = dataType
        self.modelFingerprint = modelFingerprint
    }

    /// Elements in one (layer, block) slice: `2 * kvHeads * blockSize * headDim` (K part, then V part).
    public var layerBlockElements: Int { 2 * kvHeads * blockSize * headDim }

    /// Bytes in one (layer, block) slice.
    public var layerBlockBytes: Int { layerBlockElements * dataType.byteWidth }

    /// Element offset of the V part inside a layer-block slice (`kvHeads * blockSize * headDim`).
    public var valueOffsetElements: Int { kvHeads * blockSize * headDim }

    /// Element offset, inside the K part (or inside the V part), of the head vector of `kvHead` at `slot`:
    /// `(kvHead * blockSize + slot) * headDim`.
    @inlinable
    public func headVectorOffset(kvHead: Int, slot: Int) -> Int { (kvHead * blockSize + slot) * headDim }

    /// Blocks needed to hold `tokenCount` tokens.
    public func blocks(forTokens tokenCount: Int) -> Int {
        tokenCount <= 0 ? 0 : (tokenCount - 1) / blockSize + 1
    }

    /// Checks every dimension is positive and within the documented maxima.
    public func validate() throws(InferenceError) {
        try Self.check("layers", layers, 1...Self.maximumLayers)
        try Self.check("kvHeads", kvHeads, 1...Self.maximumKVHeads)
        try Self.check("headDim", headDim, 1...Self.maximumHeadDim)
        try Self.check("blockSize", blockSize, 1...Self.maximumBlockSize)
        if modelFingerprint.utf8.count > Self.maximumFingerprintBytes {
            throw InferenceError(
                .invalidArgument,
                "KV layout modelFingerprint is \(modelFingerprint.utf8.count) bytes; at most \(Self.maximumFingerprintBytes) allowed")
        }
        // kvHeads * blockSize * headDim * 2 * 4 can overflow a 32-bit product but not Int64 within the maxima;
        // the slice size limit keeps one allocation per layer sane.
        if layerBlockBytes > Self.maximumLayerBlockBytes {
            throw InferenceError(
                .invalidArgument,
                "KV layout layer-block slice would be \(layerBlockBytes) bytes (2 × \(kvHeads) kvHeads × \(blockSize) blockSize × \(headDim) headDim × \(dataType.byteWidth)); at most \(Self.maximumLayerBlockBytes) allowed")
        }
    }

    private static func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws(InferenceError) {
        guard range.contains(value) else {
            throw InferenceError(.invalidArgument, "KV layout \(name) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
    }

    /// The first field in which `other` differs from `self`, as (name, self's value, other's value).
    func firstDifference(from other: KVCacheLayout) -> (field: String, mine: String, theirs: String)? {
        if layers != other.layers { return ("layers", "\(layers)", "\(other.layers)") }
        if kvHeads != other.kvHeads { return ("kvHeads", "\(kvHeads)", "\(other.kvHeads)") }
        if headDim != other.headDim { return ("headDim", "\(headDim)", "\(other.headDim)") }
        if blockSize != other.blockSize { return ("blockSize", "\(blockSize)", "\(other.blockSize)") }
        if dataType != other.dataType { return ("dataType", "\(dataType)", "\(other.dataType)") }
        if modelFingerprint != other.modelFingerprint {
            return ("modelFingerprint", "\"\(modelFingerprint)\"", "\"\(other.modelFingerprint)\"")
        }
        return nil
    }
}

/// Names one sequence inside one `PagedKVCache`. IDs are never reused by a cache instance.
public struct SequenceID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "seq#\(rawValue)" }
}
