import CKernels
import Foundation

// The blocks every architecture's forward pass is built from, written once for both execution paths.
//
// A pass runs `rows` rows at once. A row is one token at one position of one sequence: the prefill path passes
// consecutive positions of a single sequence, the decode path one new token for each of several sequences. The
// row-wise steps (RMSNorm, RoPE, gated activations, residuals) are the same for both; what differs — how a
// projection is multiplied and how attention reads the KV cache — is the `TransformerBackend`.
//
// Each architecture's file (Llama.swift, Qwen3.swift, Gemma3.swift) strings these blocks together in its own order,
// top to bottom, with the shapes and llama.cpp's tensor names of every step.

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

/// The nonlinearity of a gated feed-forward block: `act(x·W_gateᵀ) ⊙ (x·W_upᵀ)`.
enum GatedActivation {
    /// SwiGLU: silu(z) = z / (1 + e^-z) (Llama, Qwen).
    case silu
    /// GeGLU with GELU's tanh approximation, looked up in f16 as ggml does (Gemma).
    case gelu

    /// gate = act(gate) ⊙ up over `count` elements.
    @inline(__always)
    func apply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        switch self {
        case .silu: VectorMath.swiglu(gate, up, count: count)
        case .gelu: VectorMath.geglu(gate, up, count: count)
        }
    }
}

/// The two things each execution path does its own way.
protocol TransformerBackend: AnyObject {
    var pool: ThreadPool { get }
    /// Sees the pass's intermediate tensors when set (a debugging aid: it costs a nil check per tensor when not).
    var activationObserver: ActivationObserver? { get }
    /// `y[rows × p.rows] = x[rows × p.columns] · W_pᵀ` for layer `layer`. May round `x` in place to the 8-bit
    /// grid the quantized products use (`x` is only ever an input to projections).
    func linear(_ p: LayerProjection, layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>)
    /// Stores the rows' keys and values (`k`, `v`: `[rows × kv]`, RoPE applied) in the KV cache at their
    /// positions, then writes `output[rows × q]`: each query head attending causally over its row's sequence
    /// (from `configuration.firstVisiblePosition(layer:position:)` on), scores scaled by
    /// `configuration.attentionScale`. May overwrite `q`.
    func attention(
        layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows: Int,
        output: UnsafeMutablePointer<Float>)
    /// `logits[rows × vocab] = x[rows × d] · W_outᵀ` (may round `x` like `linear`).
    func logits(_ x: UnsafeMutablePointer<Float>, rows: Int, _ logits: UnsafeMutablePointer<Float>)
    /// `q`, `k`, `v` = `x · W_qᵀ`, `x · W_kᵀ`, `x · W_vᵀ`, as three `linear` calls give them.
    func attentionProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, q: UnsafeMutablePointer<Float>,
        k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)
    /// `gate = act(x · W_gateᵀ) ⊙ (x · W_upᵀ)` (`[rows × ff]`), with `up` as scratch, as two `linear` calls and
    /// the activation give it.
    func gatedProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, ff: Int, gate: UnsafeMutablePointer<Float>,
        up: UnsafeMutablePointer<Float>, activation: GatedActivation)
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
        up: UnsafeMutablePointer<Float>, activation: GatedActivation
    ) {
        linear(.gate, layer: layer, x, rows: rows, gate)
        linear(.up, layer: layer, x, rows: rows, up)
        RowSteps.forRows(rows, pool, width: ff) { i in activation.apply(gate + i * ff, up + i * ff, count: ff) }
    }
}

/// Activation buffers for up to `maxRows` rows, allocated once per engine so a forward pass allocates nothing.
final class ForwardScratch {
    let maxRows: Int
    let x, xb, xb2, q, k, v, hb, hb2: UnsafeMutablePointer<Float>
    /// RoPE cos/sin pairs per row: `[rows × ropeDim]` for the global layers, then as many for the sliding-window
    /// layers (whose RoPE base differs).
    let rope: UnsafeMutablePointer<Float>

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
        rope = buffer(2 * c.ropeDimensionCount)
    }

    deinit {
        for p in [x, xb, xb2, q, k, v, hb, hb2, rope] { p.deallocate() }
    }
}

/// Runs `rows` tokens through `model` with the graph of its architecture and writes logits for the rows listed
/// in `logitRows` (`logits[i × vocab]` for the i-th listed row). K/V of every row are stored by the backend.
///
/// `tokens` must be valid ids and `positions` the rows' positions in their sequences; the engines check both.
/// The activation observer sees the first `observedRows` rows (all by default): a prefill pass pads its rows
/// (see `PrefillEngine`), and the padding after the last token is of no interest.
func runForward<Backend: TransformerBackend>(
    model: TransformerModel, backend: Backend, scratch: ForwardScratch,
    tokens: UnsafePointer<Int32>, positions: UnsafePointer<Int32>, rows: Int, observedRows: Int? = nil,
    logitRows: UnsafePointer<Int32>, logitRowCount: Int, logits: UnsafeMutablePointer<Float>
) {
    let pass = ForwardPass(
        model: model, backend: backend, s: scratch, tokens: tokens, positions: positions, n: rows,
        observedRows: observedRows ?? rows)
    switch model.configuration.family {
    case .llama, .qwen2: Llama.forward(pass, logitRows: logitRows, logitRowCount: logitRowCount, logits: logits)
    case .qwen3: Qwen3.forward(pass, logitRows: logitRows, logitRowCount: logitRowCount, logits: logits)
    case .gemma3: Gemma3.forward(pass, logitRows: logitRows, logitRowCount: logitRowCount, logits: logits)
    }
}

/// One forward pass's context and its blocks. Every block works on all `n` rows; the buffers are `s`'s.
struct ForwardPass<Backend: TransformerBackend> {
    let model: TransformerModel
    let backend: Backend
    let s: ForwardScratch
    let tokens: UnsafePointer<Int32>
    let positions: UnsafePointer<Int32>
    let n: Int
    /// Rows shown to the activation observer (a prefix of the `n`).
    let observedRows: Int

    var c: ModelConfiguration { model.configuration }
    var w: ModelWeights { model.weights }
    var pool: ThreadPool { backend.pool }

    /// Shows `p[rows × width]` to the backend's observer, if any, as `name`.
    @inline(__always)
    func observe(_ name: @autoclosure () -> String, _ p: UnsafeMutablePointer<Float>, width: Int, rows: Int? = nil) {
        guard let observer = backend.activationObserver else { return }
        let rows = rows ?? observedRows
        observer(Activation(name: name(), rows: rows, width: width, values: UnsafeBufferPointer(start: p, count: rows * width)))
    }

    // MARK: Blocks

    /// x[i] = E[token_i], then the RoPE angles of every row's position for the global and sliding-window layers.
    func embed() {
        let d = c.embeddingLength, e = w.tokenEmbedding, x = s.x, tokens = tokens
        RowSteps.forRows(n, pool, width: d) { i in Kernels.dequantizeRow(e, row: Int(tokens[i]), into: x + i * d) }
        observe("inp_embd", s.x, width: d)
        let ropeDim = c.ropeDimensionCount, c = c, factors = w.ropeFrequencyFactors
        let kinds = c.slidingWindow == nil ? [(0, c.rope(layer: 0))] : RowSteps.ropeKinds(c)
        for (kind, rope) in kinds {
            let table = s.rope + kind * s.maxRows * ropeDim, positions = positions
            RowSteps.forRows(n, pool, width: ropeDim) { i in
                RowSteps.ropeAngles(
                    dimensions: ropeDim, position: Int(positions[i]), base: rope.base, scale: rope.scale,
                    factors: factors, into: table + i * ropeDim)
            }
        }
    }

    /// x *= scale (Gemma's √d).
    func scaleEmbeddings(by scale: Float) {
        let d = c.embeddingLength, x = s.x
        RowSteps.forRows(n, pool, width: d) { i in for j in 0..<d { x[i * d + j] *= scale } }
    }

    /// `dst[i] = RMSNorm(src[i]) · gain` over rows of `width`.
    func norm(_ src: UnsafeMutablePointer<Float>, _ gain: [Float], into dst: UnsafeMutablePointer<Float>, width: Int) {
        let epsilon = c.rmsNormEpsilon
        RowSteps.forRows(n, pool, width: width) { i in RowSteps.rmsNorm(src + i * width, gain, epsilon, into: dst + i * width, count: width) }
    }

    /// `x += addend` (skipped when nil), then `dst = RMSNorm(x) · gain`, in one sweep over the rows.
    func residualNorm(adding addend: UnsafeMutablePointer<Float>?, _ gain: [Float], into dst: UnsafeMutablePointer<Float>) {
        let d = c.embeddingLength, epsilon = c.rmsNormEpsilon, x = s.x
        RowSteps.forRows(n, pool, width: d) { i in
            if let addend { RowSteps.add(addend + i * d, into: x + i * d, count: d) }
            RowSteps.rmsNorm(x + i * d, gain, epsilon, into: dst + i * d, count: d)
        }
    }

    /// `x += addend`.
    func residual(adding addend: UnsafeMutablePointer<Float>) {
        let d = c.embeddingLength, x = s.x
        RowSteps.forRows(n, pool, width: d) { i in RowSteps.add(addend + i * d, into: x + i * d, count: d) }
    }

    /// q = xb·Wqᵀ (+ bq), k = xb·Wkᵀ (+ bk), v = xb·Wvᵀ (+ bv)              q [n × q], k, v [n × kv]
    func attentionProjections(layer l: Int) {
        backend.attentionProjections(layer: l, s.xb, rows: n, q: s.q, k: s.k, v: s.v)
        let layer = w.layers[l], qd = c.queryDimension, kvd = c.kvDimension, q = s.q, k = s.k, v = s.v
        guard layer.queryBias != nil || layer.keyBias != nil || layer.valueBias != nil else { return }
        RowSteps.forRows(n, pool, width: qd) { i in
            if let b = layer.queryBias { RowSteps.addBias(q + i * qd, b) }
            if let b = layer.keyBias { RowSteps.addBias(k + i * kvd, b) }
            if let b = layer.valueBias { RowSteps.addBias(v + i * kvd, b) }
        }
    }

    /// Every query head and every key head RMS-normalized on its own with its gain `[headDim]`.
    func headNorms(layer l: Int) {
        let layer = w.layers[l]
        guard let qn = layer.queryNorm, let kn = layer.keyNorm else { return }
        let hd = c.headDimension, qd = c.queryDimension, kvd = c.kvDimension, epsilon = c.rmsNormEpsilon
        let heads = c.headCount, kvHeads = c.kvHeadCount, q = s.q, k = s.k
        RowSteps.forRows(n, pool, width: qd) { i in
            for h in 0..<heads { RowSteps.rmsNorm(q + i * qd + h * hd, qn, epsilon, into: q + i * qd + h * hd, count: hd) }
            for h in 0..<kvHeads { RowSteps.rmsNorm(k + i * kvd + h * hd, kn, epsilon, into: k + i * kvd + h * hd, count: hd) }
        }
        observe("Qcur_normed-\(l)", s.q, width: qd)
        observe("Kcur_normed-\(l)", s.k, width: kvd)
    }

    /// Rotates each head's leading ropeDim dimensions by the row's position, with layer `l`'s RoPE base.
    func rope(layer l: Int) {
        let ropeDim = c.ropeDimensionCount, hd = c.headDimension, qd = c.queryDimension, kvd = c.kvDimension
        let heads = c.headCount, kvHeads = c.kvHeadCount, q = s.q, k = s.k
        let table = s.rope + (c.isSlidingWindow(layer: l) ? s.maxRows * ropeDim : 0)
        let adjacent = c.family.ropeStyle == .adjacentPairs
        @inline(__always) func rotate(_ x: UnsafeMutablePointer<Float>, _ angles: UnsafePointer<Float>) {
            if adjacent {
                RowSteps.rotateAdjacentPairs(x, angles, ropeDim)
            } else {
                RowSteps.rotateHalves(x, angles, ropeDim)
            }
        }
        RowSteps.forRows(n, pool, width: qd) { i in
            let angles = table + i * ropeDim
            for h in 0..<heads { rotate(q + i * qd + h * hd, angles) }
            for h in 0..<kvHeads { rotate(k + i * kvd + h * hd, angles) }
        }
        observe("Qcur-\(l)", s.q, width: qd)
        observe("Kcur-\(l)", s.k, width: kvd)
        observe("Vcur-\(l)", s.v, width: kvd)
    }

    /// Stores k, v in the cache; xb2 = softmax(scale · q·Kᵀ + causal/window mask)·V per head, then
    /// xb = xb2·Woᵀ.                                                      xb2 [n × q], xb [n × d]
    func attention(layer l: Int) {
        backend.attention(layer: l, q: s.q, k: s.k, v: s.v, rows: n, output: s.xb2)
        observe("kqv_out-\(l)", s.xb2, width: c.queryDimension)
        backend.linear(.output, layer: l, s.xb2, rows: n, s.xb)
        observe("attn_out-\(l)", s.xb, width: c.embeddingLength)
    }

    /// hb = act(xb·Wgateᵀ) ⊙ (xb·Wupᵀ), then xb = hb·Wdownᵀ.               hb [n × ff], xb [n × d]
    func feedForward(layer l: Int, activation: GatedActivation) {
        let ff = c.feedForwardLength
        backend.gatedProjections(layer: l, s.xb, rows: n, ff: ff, gate: s.hb, up: s.hb2, activation: activation)
        observe(activation == .silu ? "ffn_swiglu-\(l)" : "ffn_geglu-\(l)", s.hb, width: ff)
        backend.linear(.down, layer: l, s.hb, rows: n, s.xb)
        observe("ffn_out-\(l)", s.xb, width: c.embeddingLength)
    }

    /// The final RMSNorm of the rows that need logits, gathered into xb, then logits = xb·W_outᵀ (soft-capped
    /// when the model says so).                                            xb [m × d], logits [m × vocab]
    func output(logitRows: UnsafePointer<Int32>, logitRowCount m: Int, logits: UnsafeMutablePointer<Float>) {
        let d = c.embeddingLength, x = s.x, xb = s.xb, gain = w.outputNorm, epsilon = c.rmsNormEpsilon
        RowSteps.forRows(m, pool, width: d) { j in
            RowSteps.rmsNorm(x + Int(logitRows[j]) * d, gain, epsilon, into: xb + j * d, count: d)
        }
        observe("result_norm", s.xb, width: d, rows: m)
        backend.logits(s.xb, rows: m, logits)
        let vocabulary = c.vocabularySize
        if let cap = c.finalLogitSoftcapping {
            RowSteps.forRows(m, pool, width: vocabulary) { j in
                let row = logits + j * vocabulary
                for t in 0..<vocabulary { row[t] = tanhf(row[t] / cap) * cap }
            }
        }
        observe("result_output", logits, width: vocabulary, rows: m)
    }
}

/// The row-wise steps of a forward pass: each works on one row (or on all rows through `forRows`).
enum RowSteps {
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

    /// The distinct RoPEs of a model with sliding-window layers: (table index, base and scale), global first.
    static func ropeKinds(_ c: ModelConfiguration) -> [(Int, (base: Float, scale: Float))] {
        var kinds: [(Int, (base: Float, scale: Float))] = []
        if let global = (0..<c.layerCount).first(where: { !c.isSlidingWindow(layer: $0) }) {
            kinds.append((0, c.rope(layer: global)))
        }
        if let sliding = (0..<c.layerCount).first(where: { c.isSlidingWindow(layer: $0) }) {
            kinds.append((1, c.rope(layer: sliding)))
        }
        return kinds
    }

    /// cos/sin of θ_i = pos · scale · base^(-2i/dimensions) / factor_i for each rotated pair, accumulated as
    /// ggml does (`ggml_rope_cache_init`; `factors` are Llama 3's frequency factors, or none).
    static func ropeAngles(
        dimensions: Int, position: Int, base: Float, scale: Float, factors: [Float]?,
        into angles: UnsafeMutablePointer<Float>
    ) {
        let thetaScale = powf(base, -2.0 / Float(dimensions))
        var theta = Float(position)
        for i in stride(from: 0, to: dimensions, by: 2) {
            let t = scale * (factors.map { theta / $0[i / 2] } ?? theta)
            angles[i] = cosf(t)
            angles[i + 1] = sinf(t)
            theta *= thetaScale
        }
    }

    /// llama.cpp's NORMAL RoPE mode (`llama` GGUFs, whose converter permuted Wq/Wk for it): rotates adjacent
    /// pairs (x[2i], x[2i+1]) by angle i.
    @inline(__always)
    static func rotateAdjacentPairs(_ x: UnsafeMutablePointer<Float>, _ angles: UnsafePointer<Float>, _ dimensions: Int) {
        for i in stride(from: 0, to: dimensions, by: 2) {
            let cos = angles[i], sin = angles[i + 1]
            let x0 = x[i], x1 = x[i + 1]
            x[i] = x0 * cos - x1 * sin
            x[i + 1] = x0 * sin + x1 * cos
        }
    }

    /// llama.cpp's NEOX RoPE mode (Qwen, Gemma): rotates (x[i], x[i + dimensions/2]) by angle i.
    @inline(__always)
    static func rotateHalves(_ x: UnsafeMutablePointer<Float>, _ angles: UnsafePointer<Float>, _ dimensions: Int) {
        let half = dimensions / 2
        for i in 0..<half {
            let cos = angles[2 * i], sin = angles[2 * i + 1]
            let x0 = x[i], x1 = x[i + half]
            x[i] = x0 * cos - x1 * sin
            x[i + half] = x0 * sin + x1 * cos
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
