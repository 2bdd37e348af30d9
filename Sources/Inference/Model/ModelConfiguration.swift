import GGUF

/// Hyperparameters of a Llama-family transformer, read from GGUF metadata (`<arch>.*` keys).
///
/// Values are validated once here, so the forward passes can rely on them: head counts divide evenly,
/// the RoPE dimension fits the head, and so on. Every error names the metadata key at fault.
public struct ModelConfiguration: Sendable, Equatable, Codable {
    /// How RoPE positions are scaled (`<arch>.rope.scaling.type`).
    public enum RopeScaling: Sendable, Equatable, Codable {
        case none
        /// Positions are divided by `factor` (llama.cpp's `freq_scale = 1 / factor`).
        case linear(factor: Float)
    }

    /// `general.architecture`, e.g. `llama`.
    public var architecture: String
    public var layerCount: Int
    /// Width of the residual stream (`embedding_length`).
    public var embeddingLength: Int
    /// Hidden width of the SwiGLU feed-forward block.
    public var feedForwardLength: Int
    public var headCount: Int
    /// Key/value heads; `headCount / kvHeadCount` query heads share one (grouped-query attention).
    public var kvHeadCount: Int
    /// `embeddingLength / headCount`.
    public var headDimension: Int
    /// Leading dimensions of each head that RoPE rotates (normally the whole head).
    public var ropeDimensionCount: Int
    public var ropeFrequencyBase: Float
    public var ropeScaling: RopeScaling
    public var rmsNormEpsilon: Float
    /// Context the model was trained for; the engines refuse positions beyond it.
    public var contextLength: Int
    public var vocabularySize: Int

    /// Query dimension: `headCount * headDimension`.
    public var queryDimension: Int { headCount * headDimension }
    /// Key (and value) dimension: `kvHeadCount * headDimension`.
    public var kvDimension: Int { kvHeadCount * headDimension }

    public init(
        architecture: String, layerCount: Int, embeddingLength: Int, feedForwardLength: Int,
        headCount: Int, kvHeadCount: Int, ropeDimensionCount: Int? = nil, ropeFrequencyBase: Float = 10_000,
        ropeScaling: RopeScaling = .none, rmsNormEpsilon: Float = 1e-5, contextLength: Int, vocabularySize: Int
    ) throws(InferenceError) {
        func check(_ ok: Bool, _ key: String, _ why: String) throws(InferenceError) {
            if !ok { throw InferenceError(.invalidModel, "\(architecture).\(key): \(why)") }
        }
        try check(layerCount > 0, "block_count", "must be positive, found \(layerCount)")
        try check(embeddingLength > 0, "embedding_length", "must be positive, found \(embeddingLength)")
        try check(feedForwardLength > 0, "feed_forward_length", "must be positive, found \(feedForwardLength)")
        try check(headCount > 0, "attention.head_count", "must be positive, found \(headCount)")
        try check(
            embeddingLength % headCount == 0, "attention.head_count",
            "embedding_length \(embeddingLength) is not a multiple of head_count \(headCount)")
        try check(
            kvHeadCount > 0 && headCount % kvHeadCount == 0, "attention.head_count_kv",
            "must be a positive divisor of head_count \(headCount), found \(kvHeadCount)")
        let headDimension = embeddingLength / headCount
        let ropeDimensions = ropeDimensionCount ?? headDimension
        try check(
            ropeDimensions > 0 && ropeDimensions <= headDimension && ropeDimensions % 2 == 0, "rope.dimension_count",
            "must be even and within the head dimension \(headDimension), found \(ropeDimensions)")
        try check(ropeFrequencyBase > 0 && ropeFrequencyBase.isFinite, "rope.freq_base", "must be positive, found \(ropeFrequencyBase)")
        if case .linear(let factor) = ropeScaling {
            try check(factor > 0 && factor.isFinite, "rope.scaling.factor", "must be positive, found \(factor)")
        }
        try check(
            rmsNormEpsilon > 0 && rmsNormEpsilon < 1, "attention.layer_norm_rms_epsilon",
            "must be in (0, 1), found \(rmsNormEpsilon)")
        try check(contextLength > 0, "context_length", "must be positive, found \(contextLength)")
        try check(vocabularySize > 0, "vocab_size", "must be positive, found \(vocabularySize)")
        self.architecture = architecture
        self.layerCount = layerCount
        self.embeddingLength = embeddingLength
        self.feedForwardLength = feedForwardLength
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDimension = headDimension
        self.ropeDimensionCount = ropeDimensions
        self.ropeFrequencyBase = ropeFrequencyBase
        self.ropeScaling = ropeScaling
        self.rmsNormEpsilon = rmsNormEpsilon
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
    }

    /// Reads `<arch>.*` metadata, where `<arch>` is `general.architecture`.
    ///
    /// `vocab_size` may be absent (older converters); then the token embedding's row count is used.
    public init(gguf: GGUFFile) throws(InferenceError) {
        let architecture: String
        do { architecture = try gguf.string("general.architecture") } catch {
            throw InferenceError(.invalidModel, "\(gguf.name): cannot read general.architecture", cause: error)
        }
        let prefix = architecture + "."
        func integer(_ key: String) throws(InferenceError) -> Int {
            do { return try gguf.integer(prefix + key) } catch {
                throw InferenceError(.invalidModel, "\(gguf.name): missing or invalid \(prefix + key)", cause: error)
            }
        }
        func optionalInteger(_ key: String) throws(InferenceError) -> Int? {
            do { return try gguf.optionalInteger(prefix + key) } catch {
                throw InferenceError(.invalidModel, "\(gguf.name): invalid \(prefix + key)", cause: error)
            }
        }
        func optionalFloat(_ key: String) throws(InferenceError) -> Float? {
            do { return try gguf.optionalFloat(prefix + key) } catch {
                throw InferenceError(.invalidModel, "\(gguf.name): invalid \(prefix + key)", cause: error)
            }
        }
        let headCount = try integer("attention.head_count")
        var scaling = RopeScaling.none
        let scalingType: String?
        do { scalingType = try gguf.optionalString(prefix + "rope.scaling.type") } catch {
            throw InferenceError(.invalidModel, "\(gguf.name): invalid \(prefix)rope.scaling.type", cause: error)
        }
        switch scalingType {
        case nil, "none":
            break
        case "linear":
            guard let factor = try optionalFloat("rope.scaling.factor") else {
                throw InferenceError(.invalidModel, "\(gguf.name): rope.scaling.type is linear but \(prefix)rope.scaling.factor is missing")
            }
            scaling = factor == 1 ? .none : .linear(factor: factor)
        case let other?:
            throw InferenceError(.unsupportedModel, "\(gguf.name): RoPE scaling type '\(other)' is not supported (only none and linear)")
        }
        var vocabulary = try optionalInteger("vocab_size")
        if vocabulary == nil, let embedding = gguf.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2 {
            vocabulary = embedding.dimensions[1]
        }
        guard let vocabularySize = vocabulary else {
            throw InferenceError(.invalidModel, "\(gguf.name): no \(prefix)vocab_size and no token_embd.weight to infer it from")
        }
        try self.init(
            architecture: architecture,
            layerCount: try integer("block_count"),
            embeddingLength: try integer("embedding_length"),
            feedForwardLength: try integer("feed_forward_length"),
            headCount: headCount,
            kvHeadCount: try optionalInteger("attention.head_count_kv") ?? headCount,
            ropeDimensionCount: try optionalInteger("rope.dimension_count"),
            ropeFrequencyBase: try optionalFloat("rope.freq_base") ?? 10_000,
            ropeScaling: scaling,
            rmsNormEpsilon: try optionalFloat("attention.layer_norm_rms_epsilon") ?? 1e-5,
            contextLength: try integer("context_length"),
            vocabularySize: vocabularySize
        )
    }
}
