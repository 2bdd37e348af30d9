import Foundation
import GGUF

/// Hyperparameters of a decoder-only transformer, read from GGUF metadata (`<arch>.*` keys) the way llama.cpp's
/// loader reads them for that architecture.
///
/// Values are validated once here, so the forward passes can rely on them: head counts divide evenly,
/// the RoPE dimension fits the head, and so on. Every error names the metadata key at fault.
public struct ModelConfiguration: Sendable, Equatable, Codable {
    /// The graphs Baton runs (`general.architecture`). Mistral's files are `llama`.
    public enum Architecture: String, Sendable, Equatable, Codable, CaseIterable, CustomStringConvertible {
        /// Llama 1–3 and Mistral: pre-norm, SwiGLU, RoPE on adjacent pairs; optional Llama 3 frequency factors
        /// (`rope_freqs.weight`) and untied output.
        case llama
        /// Llama's graph with Q/K/V biases and RoPE on halves.
        case qwen2
        /// Qwen2's graph without biases and with a per-head RMSNorm of Q and K before RoPE.
        case qwen3
        /// Scaled embeddings, per-head Q/K RMSNorm, post-attention and post-FFN norms, GELU-gated FFN,
        /// sliding-window layers interleaved with global ones, each kind with its own RoPE base.
        case gemma3

        public var description: String { rawValue }

        /// How RoPE pairs the dimensions of a head (llama.cpp's `llama_model_rope_type`).
        public var ropeStyle: RopeStyle { self == .llama ? .adjacentPairs : .halves }
    }

    /// Which dimensions RoPE rotates together.
    public enum RopeStyle: String, Sendable, Equatable, Codable {
        /// (x[2i], x[2i+1]): llama.cpp's NORMAL mode, for which `llama` converters permute Wq/Wk.
        case adjacentPairs
        /// (x[i], x[i + n/2]): llama.cpp's NEOX mode.
        case halves
    }

    /// How RoPE positions are scaled (`<arch>.rope.scaling.type`).
    public enum RopeScaling: Sendable, Equatable, Codable {
        case none
        /// Positions are divided by `factor` (llama.cpp's `freq_scale = 1 / factor`).
        case linear(factor: Float)
    }

    /// `general.architecture`, e.g. `llama`.
    public var architecture: String
    /// The graph `architecture` names.
    public var family: Architecture
    public var layerCount: Int
    /// Width of the residual stream (`embedding_length`).
    public var embeddingLength: Int
    /// Hidden width of the gated feed-forward block.
    public var feedForwardLength: Int
    public var headCount: Int
    /// Key/value heads; `headCount / kvHeadCount` query heads share one (grouped-query attention).
    public var kvHeadCount: Int
    /// `attention.key_length` (= `value_length`), else `embeddingLength / headCount`.
    public var headDimension: Int
    /// Leading dimensions of each head that RoPE rotates (normally the whole head).
    public var ropeDimensionCount: Int
    /// RoPE base of the global (full-attention) layers.
    public var ropeFrequencyBase: Float
    /// RoPE scaling of the global layers.
    public var ropeScaling: RopeScaling
    public var rmsNormEpsilon: Float
    /// Context the model was trained for; the engines refuse positions beyond it.
    public var contextLength: Int
    public var vocabularySize: Int
    /// Positions a sliding-window layer attends to, its own included (`attention.sliding_window`); nil when
    /// every layer attends to the whole sequence.
    public var slidingWindow: Int?
    /// Per layer, whether it is a sliding-window layer (empty when `slidingWindow` is nil).
    public var slidingWindowLayers: [Bool]
    /// RoPE base of the sliding-window layers (`rope.freq_base_swa`; 10 000 by default, as llama.cpp), which
    /// also rotate without scaling.
    public var slidingWindowRopeBase: Float
    /// Multiplies Q·Kᵀ before the softmax: 1/√headDimension, except where the architecture says otherwise.
    public var attentionScale: Float
    /// Multiplies the token embeddings (Gemma: √embeddingLength); nil for none.
    public var embeddingScale: Float?
    /// Logits become `cap · tanh(logits / cap)` (`final_logit_softcapping`); nil for none.
    public var finalLogitSoftcapping: Float?

    /// Query dimension: `headCount * headDimension`.
    public var queryDimension: Int { headCount * headDimension }
    /// Key (and value) dimension: `kvHeadCount * headDimension`.
    public var kvDimension: Int { kvHeadCount * headDimension }

    /// Whether layer `layer` attends only to the last `slidingWindow` positions.
    public func isSlidingWindow(layer: Int) -> Bool {
        slidingWindow != nil && slidingWindowLayers[layer]
    }

    /// The first position a query at `position` attends to in layer `layer`.
    @inline(__always)
    public func firstVisiblePosition(layer: Int, position: Int) -> Int {
        guard let window = slidingWindow, slidingWindowLayers[layer] else { return 0 }
        return max(0, position - window + 1)
    }

    /// RoPE base and frequency scale of layer `layer` (llama.cpp's `get_rope_freq_base` / `_scale`).
    public func rope(layer: Int) -> (base: Float, scale: Float) {
        if isSlidingWindow(layer: layer) { return (slidingWindowRopeBase, 1) }
        if case .linear(let factor) = ropeScaling { return (ropeFrequencyBase, 1 / factor) }
        return (ropeFrequencyBase, 1)
    }

    public init(
        architecture: String, layerCount: Int, embeddingLength: Int, feedForwardLength: Int,
        headCount: Int, kvHeadCount: Int, headDimension: Int? = nil, ropeDimensionCount: Int? = nil,
        ropeFrequencyBase: Float = 10_000, ropeScaling: RopeScaling = .none, rmsNormEpsilon: Float = 1e-5,
        contextLength: Int, vocabularySize: Int, slidingWindow: Int? = nil, slidingWindowLayers: [Bool] = [],
        slidingWindowRopeBase: Float = 10_000, attentionScale: Float? = nil, embeddingScale: Float? = nil,
        finalLogitSoftcapping: Float? = nil
    ) throws(InferenceError) {
        func check(_ ok: Bool, _ key: String, _ why: String) throws(InferenceError) {
            if !ok { throw InferenceError(.invalidModel, "\(architecture).\(key): \(why)") }
        }
        guard let family = Architecture(rawValue: architecture) else {
            throw InferenceError(
                .unsupportedModel,
                "architecture '\(architecture)' is not supported (supported: "
                    + Architecture.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        try check(layerCount > 0, "block_count", "must be positive, found \(layerCount)")
        try check(embeddingLength > 0, "embedding_length", "must be positive, found \(embeddingLength)")
        try check(feedForwardLength > 0, "feed_forward_length", "must be positive, found \(feedForwardLength)")
        try check(headCount > 0, "attention.head_count", "must be positive, found \(headCount)")
        if headDimension == nil {
            try check(
                embeddingLength % headCount == 0, "attention.head_count",
                "embedding_length \(embeddingLength) is not a multiple of head_count \(headCount)")
        }
        try check(
            kvHeadCount > 0 && headCount % kvHeadCount == 0, "attention.head_count_kv",
            "must be a positive divisor of head_count \(headCount), found \(kvHeadCount)")
        let headDimension = headDimension ?? embeddingLength / headCount
        try check(
            headDimension > 0 && headDimension % 2 == 0, "attention.key_length",
            "must be positive and even, found \(headDimension)")
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
        if let slidingWindow {
            try check(slidingWindow > 0, "attention.sliding_window", "must be positive, found \(slidingWindow)")
            try check(
                slidingWindowLayers.count == layerCount, "attention.sliding_window_pattern",
                "names \(slidingWindowLayers.count) layers for block_count \(layerCount)")
        }
        try check(
            slidingWindowRopeBase > 0 && slidingWindowRopeBase.isFinite, "rope.freq_base_swa",
            "must be positive, found \(slidingWindowRopeBase)")
        if let finalLogitSoftcapping {
            try check(
                finalLogitSoftcapping > 0 && finalLogitSoftcapping.isFinite, "final_logit_softcapping",
                "must be positive, found \(finalLogitSoftcapping)")
        }
        self.architecture = architecture
        self.family = family
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
        self.slidingWindow = slidingWindow
        self.slidingWindowLayers = slidingWindow == nil ? [] : slidingWindowLayers
        self.slidingWindowRopeBase = slidingWindowRopeBase
        self.attentionScale = attentionScale ?? 1 / Float(headDimension).squareRoot()
        self.embeddingScale = embeddingScale
        self.finalLogitSoftcapping = finalLogitSoftcapping
    }

    /// Reads `<arch>.*` metadata, where `<arch>` is `general.architecture`.
    ///
    /// `vocab_size` may be absent (older converters); then the token embedding's row count is used.
    public init(gguf: GGUFFile) throws(InferenceError) {
        let architecture: String
        do { architecture = try gguf.string("general.architecture") } catch {
            throw InferenceError(.invalidModel, "\(gguf.name): cannot read general.architecture", cause: error)
        }
        guard let family = Architecture(rawValue: architecture) else {
            throw InferenceError(
                .unsupportedModel,
                "\(gguf.name): architecture '\(architecture)' is not supported (supported: "
                    + Architecture.allCases.map(\.rawValue).joined(separator: ", ") + ")")
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
        let embeddingLength = try integer("embedding_length")
        let layerCount = try integer("block_count")
        var scaling = RopeScaling.none
        let scalingType: String?
        do { scalingType = try gguf.optionalString(prefix + "rope.scaling.type") } catch {
            throw InferenceError(.invalidModel, "\(gguf.name): invalid \(prefix)rope.scaling.type", cause: error)
        }
        // llama.cpp reads the factor whatever the type says, and treats a missing type as linear.
        var factor = try optionalFloat("rope.scaling.factor")
        if factor == nil { factor = try optionalFloat("rope.scale_linear") }
        switch scalingType {
        case nil, "none", "linear":
            if scalingType != "none", let factor, factor != 0, factor != 1 { scaling = .linear(factor: factor) }
        case let other?:
            throw InferenceError(
                .unsupportedModel, "\(gguf.name): RoPE scaling type '\(other)' is not supported (only none and linear)")
        }
        var vocabulary = try optionalInteger("vocab_size")
        if vocabulary == nil, let embedding = gguf.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2 {
            vocabulary = embedding.dimensions[1]
        }
        guard let vocabularySize = vocabulary else {
            throw InferenceError(.invalidModel, "\(gguf.name): no \(prefix)vocab_size and no token_embd.weight to infer it from")
        }
        let keyLength = try optionalInteger("attention.key_length")
        let valueLength = try optionalInteger("attention.value_length")
        if let valueLength, valueLength != keyLength ?? embeddingLength / max(headCount, 1) {
            throw InferenceError(
                .unsupportedModel,
                "\(gguf.name): \(prefix)attention.value_length \(valueLength) differs from the key length; Baton needs them equal")
        }

        // Sliding-window layers: Gemma 3 has them when `attention.sliding_window` is set, every sixth layer global
        // unless `attention.sliding_window_pattern` says otherwise (an integer period or a per-layer bool array).
        var window: Int?
        var windowLayers: [Bool] = []
        var windowRopeBase: Float = 10_000
        var attentionScale: Float?
        var embeddingScale: Float?
        var softcapping: Float?
        let headDimension = keyLength ?? (headCount > 0 ? embeddingLength / headCount : 0)
        switch family {
        case .llama, .qwen2, .qwen3:
            break
        case .gemma3:
            if let size = try optionalInteger("attention.sliding_window"), size > 0 {
                window = size
                let key = prefix + "attention.sliding_window_pattern"
                switch gguf.metadata[key] {
                case nil:
                    windowLayers = (0..<layerCount).map { $0 % 6 < 5 }
                case .array(let values)?:
                    windowLayers = try values.map { value throws(InferenceError) -> Bool in
                        guard case .bool(let flag) = value else {
                            throw InferenceError(.invalidModel, "\(gguf.name): \(key) must hold booleans or be an integer")
                        }
                        return flag
                    }
                case let value?:
                    guard let period = value.integerValue, period >= 0 else {
                        throw InferenceError(.invalidModel, "\(gguf.name): \(key) must hold booleans or be an integer")
                    }
                    windowLayers = (0..<layerCount).map { period == 0 || $0 % period < period - 1 }
                }
                windowRopeBase = try optionalFloat("rope.freq_base_swa") ?? 10_000
            }
            // The 27B model scales by 1/√(embedding / heads) instead (gemma_pytorch's query_pre_attn_scalar).
            let scaleWidth = layerCount == 62 ? embeddingLength / max(headCount, 1) : headDimension
            attentionScale = 1 / Float(scaleWidth).squareRoot()
            embeddingScale = Float(embeddingLength).squareRoot()
            if let cap = try optionalFloat("final_logit_softcapping"), cap != 0 { softcapping = cap }
        }
        try self.init(
            architecture: architecture,
            layerCount: layerCount,
            embeddingLength: embeddingLength,
            feedForwardLength: try integer("feed_forward_length"),
            headCount: headCount,
            kvHeadCount: try optionalInteger("attention.head_count_kv") ?? headCount,
            headDimension: keyLength,
            ropeDimensionCount: try optionalInteger("rope.dimension_count"),
            ropeFrequencyBase: try optionalFloat("rope.freq_base") ?? 10_000,
            ropeScaling: scaling,
            rmsNormEpsilon: try optionalFloat("attention.layer_norm_rms_epsilon") ?? 1e-5,
            contextLength: try integer("context_length"),
            vocabularySize: vocabularySize,
            slidingWindow: window,
            slidingWindowLayers: windowLayers,
            slidingWindowRopeBase: windowRopeBase,
            attentionScale: attentionScale,
            embeddingScale: embeddingScale,
            finalLogitSoftcapping: softcapping
        )
    }
}
