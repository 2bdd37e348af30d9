import GGUF

/// The linear projections of one transformer layer, named once here instead of by GGUF strings.
public enum LayerProjection: Int, CaseIterable, Sendable {
    case query, key, value, output, gate, up, down

    /// The GGUF tensor name inside block `layer`.
    func tensorName(layer: Int) -> String {
        switch self {
        case .query: "blk.\(layer).attn_q.weight"
        case .key: "blk.\(layer).attn_k.weight"
        case .value: "blk.\(layer).attn_v.weight"
        case .output: "blk.\(layer).attn_output.weight"
        case .gate: "blk.\(layer).ffn_gate.weight"
        case .up: "blk.\(layer).ffn_up.weight"
        case .down: "blk.\(layer).ffn_down.weight"
        }
    }
}

/// The weights of one layer: matrices stay views into the mmapped file; norm vectors are copied to f32.
public struct LayerWeights: @unchecked Sendable {
    /// RMSNorm gain before attention, `[embeddingLength]`.
    public let attentionNorm: [Float]
    /// RMSNorm gain before the feed-forward block, `[embeddingLength]`.
    public let feedForwardNorm: [Float]
    /// Projections indexed by `LayerProjection.rawValue`. Shapes (rows × columns = out × in):
    /// query `[q × d]`, key/value `[kv × d]`, output `[d × q]`, gate/up `[ff × d]`, down `[d × ff]`.
    public let projections: [WeightMatrix]
    /// Query/key/value biases (`blk.N.attn_q.bias`, ...: Qwen2), each nil when the file has none.
    public let queryBias: [Float]?
    public let keyBias: [Float]?
    public let valueBias: [Float]?
    /// RMSNorm gains applied to every query / key head before RoPE, `[headDimension]` (Qwen3, Gemma 3).
    public let queryNorm: [Float]?
    public let keyNorm: [Float]?
    /// RMSNorm gains of the attention output and of the feed-forward output before each joins the residual
    /// stream, `[embeddingLength]` (Gemma 3's `post_attention_norm`, `post_ffw_norm`).
    public let postAttentionNorm: [Float]?
    public let postFeedForwardNorm: [Float]?

    public subscript(_ projection: LayerProjection) -> WeightMatrix { projections[projection.rawValue] }
}

/// Every tensor the forward pass uses, mapped from GGUF names once at load and checked against the configuration.
///
/// Matrices point into `gguf`'s mapping: the `ModelWeights` value must not outlive the file, which the owning
/// `TransformerModel` guarantees by holding both. A file with a tensor the architecture's graph does not use is
/// refused rather than run without it.
public struct ModelWeights: @unchecked Sendable {
    /// `[vocab × d]`: row t is token t's embedding.
    public let tokenEmbedding: WeightMatrix
    public let layers: [LayerWeights]
    /// Final RMSNorm gain, `[d]`.
    public let outputNorm: [Float]
    /// `[vocab × d]`; the token embedding itself when the model ties them (no `output.weight`).
    public let output: WeightMatrix
    /// Whether `output` is the tied token embedding.
    public let outputIsTied: Bool
    /// Llama 3 RoPE frequency factors (`rope_freqs.weight`, `[ropeDimensionCount / 2]`): pair i rotates by
    /// θ_i / factor_i. Nil when the file has none.
    public let ropeFrequencyFactors: [Float]?

    /// Multiply-accumulates of the weight products for one decode token: every layer projection and the output
    /// matrix (attention over the cache comes on top and grows with the context).
    public var multiplyAccumulatesPerToken: Int {
        layers.reduce(output.rows * output.columns) { sum, layer in
            layer.projections.reduce(sum) { $0 + $1.rows * $1.columns }
        }
    }

    /// Maps and checks the tensors the graph of `c.family` reads.
    public init(gguf: GGUFFile, configuration c: ModelConfiguration) throws(InferenceError) {
        var used = Set<String>()
        func tensor(_ name: String) throws(InferenceError) -> GGUFTensorInfo {
            guard let info = gguf.tensor(named: name) else {
                throw InferenceError(.invalidModel, "\(gguf.name): tensor \(name) is missing")
            }
            used.insert(name)
            return info
        }
        func matrix(_ name: String, rows: Int, columns: Int) throws(InferenceError) -> WeightMatrix {
            try Self.matrix(gguf: gguf, info: try tensor(name), rows: rows, columns: columns)
        }
        func vector(_ name: String, count: Int) throws(InferenceError) -> [Float] {
            let info = try tensor(name)
            guard info.elementCount == count, info.dimensions.count == 1 else {
                throw InferenceError(.invalidModel, "\(gguf.name): tensor \(name) has shape \(info.dimensions), expected [\(count)]")
            }
            let view = try Self.matrix(gguf: gguf, info: info, rows: 1, columns: count)
            var values = [Float](repeating: 0, count: count)
            values.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(view, row: 0, into: $0.baseAddress!) }
            return values
        }
        func optionalVector(_ name: String, count: Int) throws(InferenceError) -> [Float]? {
            gguf.tensor(named: name) == nil ? nil : try vector(name, count: count)
        }
        let d = c.embeddingLength, q = c.queryDimension, kv = c.kvDimension, ff = c.feedForwardLength
        let hd = c.headDimension
        let headNorms = c.family == .qwen3 || c.family == .gemma3
        let postNorms = c.family == .gemma3
        tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabularySize, columns: d)
        var layers: [LayerWeights] = []
        layers.reserveCapacity(c.layerCount)
        for l in 0..<c.layerCount {
            let shapes: [LayerProjection: (rows: Int, columns: Int)] = [
                .query: (q, d), .key: (kv, d), .value: (kv, d), .output: (d, q), .gate: (ff, d), .up: (ff, d), .down: (d, ff),
            ]
            var projections: [WeightMatrix] = []
            for p in LayerProjection.allCases {
                projections.append(try matrix(p.tensorName(layer: l), rows: shapes[p]!.rows, columns: shapes[p]!.columns))
            }
            layers.append(
                LayerWeights(
                    attentionNorm: try vector("blk.\(l).attn_norm.weight", count: d),
                    feedForwardNorm: try vector("blk.\(l).ffn_norm.weight", count: d),
                    projections: projections,
                    queryBias: try optionalVector("blk.\(l).attn_q.bias", count: q),
                    keyBias: try optionalVector("blk.\(l).attn_k.bias", count: kv),
                    valueBias: try optionalVector("blk.\(l).attn_v.bias", count: kv),
                    queryNorm: headNorms ? try vector("blk.\(l).attn_q_norm.weight", count: hd) : nil,
                    keyNorm: headNorms ? try vector("blk.\(l).attn_k_norm.weight", count: hd) : nil,
                    postAttentionNorm: postNorms ? try vector("blk.\(l).post_attention_norm.weight", count: d) : nil,
                    postFeedForwardNorm: postNorms ? try vector("blk.\(l).post_ffw_norm.weight", count: d) : nil
                ))
        }
        self.layers = layers
        outputNorm = try vector("output_norm.weight", count: d)
        if gguf.tensor(named: "output.weight") != nil {
            output = try matrix("output.weight", rows: c.vocabularySize, columns: d)
            outputIsTied = false
        } else {
            output = tokenEmbedding
            outputIsTied = true
        }
        ropeFrequencyFactors =
            c.family == .llama ? try optionalVector("rope_freqs.weight", count: c.ropeDimensionCount / 2) : nil
        if let unused = gguf.tensors.first(where: { !used.contains($0.name) }) {
            throw InferenceError(
                .unsupportedModel,
                "\(gguf.name): tensor \(unused.name) is not part of the \(c.architecture) graph Baton runs; "
                    + "running without it would give wrong output")
        }
    }
    private static func matrix(gguf: GGUFFile, info: GGUFTensorInfo, rows: Int, columns: Int) throws(InferenceError) -> WeightMatrix {
        guard info.rowLength == columns, info.rowCount == rows, info.dimensions.count <= 2 else {
            throw InferenceError(
                .invalidModel,
                "\(gguf.name): tensor \(info.name) has ggml shape \(info.dimensions), expected [\(columns), \(rows)]")
        }
        // The mapping lives as long as `gguf`, which the model holds next to these views.
        let base = gguf.withTensorData(info) { $0.baseAddress! }
        do {
            return try WeightMatrix(type: info.type, rows: rows, columns: columns, base: base)
        } catch {
            throw InferenceError(.unsupportedModel, "\(gguf.name): tensor \(info.name) cannot be used", cause: error)
        }
    }
}
