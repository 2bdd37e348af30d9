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
    /// Query/key/value biases (Qwen2-style architectures); nil for Llama.
    public let queryBias: [Float]?
    public let keyBias: [Float]?
    public let valueBias: [Float]?

    public subscript(_ projection: LayerProjection) -> WeightMatrix { projections[projection.rawValue] }
}

/// Every tensor the forward pass uses, mapped from GGUF names once at load and checked against the configuration.
///
/// Matrices point into `gguf`'s mapping: the `ModelWeights` value must not outlive the file, which the owning
/// `TransformerModel` guarantees by holding both.
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

    /// Multiply-accumulates of the weight products for one decode token: every layer projection and the output
    /// matrix (attention over the cache comes on top and grows with the context).
    public var multiplyAccumulatesPerToken: Int {
        layers.reduce(output.rows * output.columns) { sum, layer in
            layer.projections.reduce(sum) { $0 + $1.rows * $1.columns }
        }
    }

    /// Maps and checks the tensors. `biases` says whether Q/K/V biases are expected (`blk.N.attn_q.bias`, ...).
    public init(gguf: GGUFFile, configuration c: ModelConfiguration, biases: Bool = false) throws(InferenceError) {
        func tensor(_ name: String) throws(InferenceError) -> GGUFTensorInfo {
            guard let info = gguf.tensor(named: name) else {
                throw InferenceError(.invalidModel, "\(gguf.name): tensor \(name) is missing")
            }
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
        let d = c.embeddingLength, q = c.queryDimension, kv = c.kvDimension, ff = c.feedForwardLength
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
                    queryBias: biases ? try vector("blk.\(l).attn_q.bias", count: q) : nil,
                    keyBias: biases ? try vector("blk.\(l).attn_k.bias", count: kv) : nil,
                    valueBias: biases ? try vector("blk.\(l).attn_v.bias", count: kv) : nil
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
