import CKernels
import Foundation

// The Llama forward pass, written once for both execution paths.
//
// A call runs `rows` rows at once. A row is one token at one position of one sequence: the prefill path passes
// consecutive positions of a single sequence, the decode path one new token for each of several sequences. The
// row-wise steps (RMSNorm, RoPE, SwiGLU, residuals) are the same for both; what differs — how a projection is
// multiplied and how attention reads the KV cache — is the `TransformerBackend`.
//
// Shapes, with d = embeddingLength, q = headCount·headDim, kv = kvHeadCount·headDim, ff = feedForwardLength:
//   x [rows × d] → per layer: attention block, feed-forward block → final RMSNorm → logits [rows × vocab].

/// One intermediate tensor of a forward pass, `rows × width` floats row-major (one row per token of the pass),
/// named as llama.cpp names it in its graph ("inp_embd", "attn_norm-3", "Qcur-3", "kqv_out-3", "l_out-3",
/// "result_output", ...; Qcur and Kcur after RoPE), so the two engines can be compared op by op
/// (Deploy/scripts/compare_activations.py). Valid only during the observer call.
public struct Activation {
    public let name: String
    public let rows: Int
    public let width: Int
    public let values: UnsafeBufferPointer<Float>

    /// A copy of row `row`.
    public func row(_ row: Int) -> [Float] { Array(values[row * width..<(row + 1) * width]) }
}

/// Called on the engine's thread for every intermediate tensor of every forward pass, in graph order.
public typealias ActivationObserver = (Activation) -> Void

/// The two things each execution path does its own way.
protocol TransformerBackend: AnyObject {
    var pool: ThreadPool { get }
    /// Sees the pass's intermediate tensors when set (a debugging aid: it costs a nil check per tensor when not).
    var activationObserver: ActivationObserver? { get }
    /// `y[rows × p.rows] = x[rows × p.columns] · W_pᵀ` for layer `layer`. May round `x` in place to the 8-bit
    /// grid the quantized products use (`x` is only ever an input to projections).
    func linear(_ p: LayerProjection, layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>)
    /// Stores the rows' keys and values (`k`, `v`: `[rows × kv]`, RoPE applied) in the KV cache at their
    /// positions, then writes `output[rows × q]`: each query head attending causally over its row's sequence.
    /// May overwrite `q`.
    func attention(
        layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows: Int,
        output: UnsafeMutablePointer<Float>)
    /// `logits[rows × vocab] = x[rows × d] · W_outᵀ` (may round `x` like `linear`).
    func logits(_ x: UnsafeMutablePointer<Float>, rows: Int, _ logits: UnsafeMutablePointer<Float>)
    /// `q`, `k`, `v` = `x · W_qᵀ`, `x · W_kᵀ`, `x · W_vᵀ`, as three `linear` calls give them.
    func attentionProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, q: UnsafeMutablePointer<Float>,
        k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)
    /// `gate = silu(x · W_gateᵀ) ⊙ (x · W_upᵀ)` (`[rows × ff]`), with `up` as scratch, as two `linear` calls and
    /// SwiGLU give it.
    func gatedProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, ff: Int, gate: UnsafeMutablePointer<Float>,
        up: UnsafeMutablePointer<Float>)
}

extension TransformerBackend {
    func attentionProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, q: UnsafeMutablePointer<Float>,
        k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    ) {
        linear(.query, layer: layer, x, rows: rows, q)
        linear(.key, layer: layer, x, rows: rows, k)
        linear(.value, layer: layer, x, rows: rows, v)
    }

    func gatedProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, ff: Int, gate: UnsafeMutablePointer<Float>,
        up: UnsafeMutablePointer<Float>
    ) {
        linear(.gate, layer: layer, x, rows: rows, gate)
        linear(.up, layer: layer, x, rows: rows, up)
        Llama.forRows(rows, pool, width: ff) { i in VectorMath.swiglu(gate + i * ff, up + i * ff, count: ff) }
    }
}

/// Activation buffers for up to `maxRows` rows, allocated once per engine so a forward pass allocates nothing.
final class ForwardScratch {
    let maxRows: Int
    let x, xb, xb2, q, k, v, hb, hb2, rope: UnsafeMutablePointer<Float>

    init(configuration c: ModelConfiguration, maxRows: Int) {
        self.maxRows = maxRows
        func buffer(_ width: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * width)
            p.initialize(repeating: 0, count: maxRows * width)
            return p
        }
        x = buffer(c.embeddingLength)
        xb = buffer(max(c.embeddingLength, c.queryDimension))
        xb2 = buffer(max(c.embeddingLength, c.queryDimension))
        q = buffer(c.queryDimension)
        k = buffer(c.kvDimension)
        v = buffer(c.kvDimension)
        hb = buffer(c.feedForwardLength)
        hb2 = buffer(c.feedForwardLength)
        rope = buffer(c.ropeDimensionCount)
    }

    deinit {
        for p in [x, xb, xb2, q, k, v, hb, hb2, rope] { p.deallocate() }
    }
}

/// The Llama architecture (and its Q/K/V-bias variants, e.g. Qwen2, whose weights carry the biases).
enum Llama {
    /// Runs `rows` tokens through the model and writes logits for the rows listed in `logitRows`
    /// (`logits[i × vocab]` for the i-th listed row). K/V of every row are stored by the backend.
    ///
    /// `tokens` must be valid ids and `positions` the rows' positions in their sequences; the engines check both.
    static func forward<Backend: TransformerBackend>(
        model: TransformerModel, backend: Backend, scratch s: ForwardScratch,
        tokens: UnsafePointer<Int32>, positions: UnsafePointer<Int32>, rows n: Int,
        logitRows: UnsafePointer<Int32>, logitRowCount: Int, logits: UnsafeMutablePointer<Float>
    ) {
        let c = model.configuration, w = model.weights, pool = backend.pool
        let d = c.embeddingLength, qd = c.queryDimension, kvd = c.kvDimension, ff = c.feedForwardLength
        let observer = backend.activationObserver
        @inline(__always) func observe(_ name: @autoclosure () -> String, _ p: UnsafeMutablePointer<Float>, width: Int, rows: Int = n) {
            guard let observer else { return }
            observer(Activation(name: name(), rows: rows, width: width, values: UnsafeBufferPointer(start: p, count: rows * width)))
        }

        // Token embeddings: x[i] = E[token_i]                                   x [n × d]
        forRows(n, pool, width: d) { i in Kernels.dequantizeRow(w.tokenEmbedding, row: Int(tokens[i]), into: s.x + i * d) }
        observe("inp_embd", s.x, width: d)
        // RoPE angles for each row's position, shared by all layers            rope [n × ropeDim] (cos, sin pairs)
        forRows(n, pool, width: c.ropeDimensionCount) { i in
            ropeAngles(c, position: Int(positions[i]), into: s.rope + i * c.ropeDimensionCount)
        }

        for l in 0..<c.layerCount {
            let layer = w.layers[l]

            // Attention block ------------------------------------------------------------------------------
            // x += the previous layer's feed-forward output; xb = RMSNorm(x) · g_attn       xb [n × d]
            forRows(n, pool, width: d) { i in
                if l > 0 { add(s.xb + i * d, into: s.x + i * d, count: d) }
                rmsNorm(s.x + i * d, layer.attentionNorm, c.rmsNormEpsilon, into: s.xb + i * d, count: d)
            }
            if l > 0 { observe("l_out-\(l - 1)", s.x, width: d) }
            observe("attn_norm-\(l)", s.xb, width: d)
            // q = xb·Wqᵀ, k = xb·Wkᵀ, v = xb·Wvᵀ                                      q [n × q], k, v [n × kv]
            backend.attentionProjections(layer: l, s.xb, rows: n, q: s.q, k: s.k, v: s.v)
            if let bq = layer.queryBias, let bk = layer.keyBias, let bv = layer.valueBias {
                forRows(n, pool, width: qd) { i in
                    addBias(s.q + i * qd, bq); addBias(s.k + i * kvd, bk); addBias(s.v + i * kvd, bv)
                }
            }
            // Rotate each head's leading ropeDim dimensions by the row's position
            forRows(n, pool, width: qd) { i in
                let angles = s.rope + i * c.ropeDimensionCount
                for h in 0..<c.headCount { rotate(s.q + i * qd + h * c.headDimension, angles, c.ropeDimensionCount) }
                for h in 0..<c.kvHeadCount { rotate(s.k + i * kvd + h * c.headDimension, angles, c.ropeDimensionCount) }
            }
            observe("Qcur-\(l)", s.q, width: qd)
            observe("Kcur-\(l)", s.k, width: kvd)
            observe("Vcur-\(l)", s.v, width: kvd)
            // Store k, v in the cache; xb2 = softmax(q·Kᵀ/√hd + causal mask)·V per head    xb2 [n × q]
            backend.attention(layer: l, q: s.q, k: s.k, v: s.v, rows: n, output: s.xb2)
            // xb = xb2·Woᵀ, added to x below                                         xb [n × d]
            observe("kqv_out-\(l)", s.xb2, width: qd)
            backend.linear(.output, layer: l, s.xb2, rows: n, s.xb)
            observe("attn_out-\(l)", s.xb, width: d)

            // Feed-forward block (SwiGLU) -----------------------------------------------------------------
            // x += the attention output; xb = RMSNorm(x) · g_ffn                     xb [n × d]
            forRows(n, pool, width: d) { i in
                add(s.xb + i * d, into: s.x + i * d, count: d)
                rmsNorm(s.x + i * d, layer.feedForwardNorm, c.rmsNormEpsilon, into: s.xb + i * d, count: d)
            }
            observe("ffn_inp-\(l)", s.x, width: d)
            observe("ffn_norm-\(l)", s.xb, width: d)
            // hb = silu(xb·Wgateᵀ) ⊙ (xb·Wupᵀ)                                       hb [n × ff]
            backend.gatedProjections(layer: l, s.xb, rows: n, ff: ff, gate: s.hb, up: s.hb2)
            // xb = hb·Wdownᵀ, added to x by the next layer's first step (or below)  xb [n × d]
            observe("ffn_swiglu-\(l)", s.hb, width: ff)
            backend.linear(.down, layer: l, s.hb, rows: n, s.xb)
            observe("ffn_out-\(l)", s.xb, width: d)
        }
        forRows(n, pool, width: d) { i in add(s.xb + i * d, into: s.x + i * d, count: d) }
        observe("l_out-\(c.layerCount - 1)", s.x, width: d)

        // Final RMSNorm of the rows that need logits, gathered into xb             xb [m × d]
        forRows(logitRowCount, pool, width: d) { j in
            rmsNorm(s.x + Int(logitRows[j]) * d, w.outputNorm, c.rmsNormEpsilon, into: s.xb + j * d, count: d)
        }
        observe("result_norm", s.xb, width: d, rows: logitRowCount)
        // logits = xb·W_outᵀ                                                        logits [m × vocab]
        backend.logits(s.xb, rows: logitRowCount, logits)
        observe("result_output", logits, width: c.vocabularySize, rows: logitRowCount)
    }

    // MARK: Row-wise steps

    /// Element-wise work (rows × width) below which a row-wise step runs on the calling thread: a decode
    /// batch's steps take a few microseconds, about what a fork/join costs, and a decode step runs ~8 of them
    /// per layer.
    static let inlineRowWork = 1 << 15

    /// Runs `body` for every row (of `width` elements), split across the pool when there is enough work to
    /// pay for the fork/join.
    @inline(__always)
    static func forRows(_ rows: Int, _ pool: ThreadPool, width: Int, _ body: (Int) -> Void) {
        let threads = min(pool.threadCount, rows)
        if threads <= 1 || rows < 4 || rows * width < inlineRowWork {
            for i in 0..<rows { body(i) }
            return
        }
        pool.parallelFor(threads) { t in
            for i in stride(from: t, to: rows, by: threads) { body(i) }
        }
    }

    /// y = x / sqrt(mean(x²) + ε) ⊙ g, summing squares in double as ggml does.
    @inline(__always)
    static func rmsNorm(
        _ x: UnsafePointer<Float>, _ gain: [Float], _ epsilon: Float, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        precondition(gain.count == count, "rmsNorm: \(gain.count) gains for \(count) elements")
        gain.withUnsafeBufferPointer { g in bk_rms_norm(Kernels.isa, x, g.baseAddress!, epsilon, y, count) }
    }

    /// cos/sin of θ_i = pos · scale · base^(-2i/ropeDim) for each rotated pair, accumulated as ggml does.
    static func ropeAngles(_ c: ModelConfiguration, position: Int, into angles: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(c.ropeFrequencyBase, -2.0 / Float(c.ropeDimensionCount))
        var frequencyScale: Float = 1
        if case .linear(let factor) = c.ropeScaling { frequencyScale = 1 / factor }
        var theta = Float(position)
        for i in stride(from: 0, to: c.ropeDimensionCount, by: 2) {
            let t = frequencyScale * theta
            angles[i] = cosf(t)
            angles[i + 1] = sinf(t)
            theta *= thetaScale
        }
    }

    /// llama.cpp's NORMAL RoPE mode (used for `llama` GGUFs, whose converter permuted Wq/Wk for it):
    /// rotates adjacent pairs (x[2i], x[2i+1]).
    @inline(__always)
    static func rotate(_ x: UnsafeMutablePointer<Float>, _ angles: UnsafePointer<Float>, _ dimensions: Int) {
        for i in stride(from: 0, to: dimensions, by: 2) {
            let cos = angles[i], sin = angles[i + 1]
            let x0 = x[i], x1 = x[i + 1]
            x[i] = x0 * cos - x1 * sin
            x[i + 1] = x0 * sin + x1 * cos
        }
    }

    @inline(__always)
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    @inline(__always)
    static func addBias(_ x: UnsafeMutablePointer<Float>, _ bias: [Float]) {
        for i in 0..<bias.count { x[i] += bias[i] }
    }
}
