import CBLAS
import CKernels
import Foundation

/// The compute-bound path: runs a whole prompt (in chunks) through the model with OpenBLAS `sgemm` on f32 weights
/// dequantized once at load, storing K/V in a paged cache and returning the last position's logits.
///
/// A token's K/V and logits are the same bits however its prompt is cut into passes, whatever other prompts share
/// its pass and whatever the thread count, so a cached prefix of any whole block continues exactly as a fresh
/// prompt would. `sgemm` rounds a row by where it sits in a call (see `SgemmRowUnit`), so every call has a fixed
/// shape for the row:
/// - projections: a pass's rows are laid out by position, the token at position p in a row ≡ p (mod `rowUnit`),
///   each sequence after the previous one (rows between them are padding, a dummy token whose results nothing
///   reads), the pass padded to whole units; the threads split the rows at unit boundaries, and every call
///   multiplies by the whole weight matrix.
/// - attention: queries in blocks of `attentionTile` positions aligned to position 0 (rows of the block outside
///   the pass are zero), keys in tiles of as many positions, also aligned to 0 and zero past the sequence's end,
///   so every product has one shape and each block sums its tiles in one order.
///
/// Holds ~4 bytes per layer parameter (the decode structures are not loaded). Not thread-safe: one serial owner
/// calls it. It sets OpenBLAS to one thread and splits work over its own `ThreadPool`, so BLAS threads never
/// spin against the pool's.
public final class PrefillEngine: @unchecked Sendable {
    /// Sees every intermediate tensor of this engine's forward passes while set (see `Activation`); set it
    /// only between passes, from the thread that runs them.
    public var activationObserver: ActivationObserver?

    public let model: TransformerModel
    public let cache: PagedKVCache
    /// Most tokens run per forward pass; longer prompts are split.
    public let chunkSize: Int
    /// Highest position + 1 a sequence may reach.
    public let maxContext: Int
    public var threadCount: Int { pool.threadCount }

    let pool: ThreadPool
    /// The f32 projections, possibly shared with other engines of the same model.
    public let weights: PrefillWeights
    /// `[layer][projection]`: f32 `[rows × columns]`, row-major like the GGUF rows.
    private let projections: [[UnsafeMutablePointer<Float>]]
    private let scratch: ForwardScratch
    private let access: KVCacheAccess
    /// Rows of a projection call come in whole units of this many, and a token sits at a row ≡ its position
    /// modulo it (measured for this model's shapes by `SgemmRowUnit`).
    let rowUnit: Int
    /// Rows of the activation buffers: any single chunk laid out by position fits.
    private let passRows: Int
    /// Positions per attention block of queries and per tile of keys.
    static let attentionTile = 64
    /// `maxContext` rounded up to whole tiles.
    private let tiledContext: Int
    /// Per KV head, the positions attention reads, gathered from the cache to f32 at their positions:
    /// `[kvHeads × tiledContext × headDim]`.
    private let keys: UnsafeMutablePointer<Float>
    private let values: UnsafeMutablePointer<Float>
    /// Per thread: scores `[attentionTile × tiledContext]`, then a block's queries and its output
    /// (`[attentionTile × headDim]` each).
    private let attentionScratch: UnsafeMutablePointer<Float>
    /// The sequences of the forward pass being run, in row order.
    private var segments: [Segment] = []
    /// Set during a pass whose caller watches layers: `(chunk, layer)`.
    private var layerObserver: ((Int, Int) -> Void)?
    /// Whether activations are rounded through 8-bit blocks before products with quantized weights.
    public let roundsActivations: Bool
    /// `[passRows × widest projection input]`: the rounded activations (see `linear`).
    private let roundedInput: UnsafeMutablePointer<Float>
    /// Which input `roundedInput` holds: key/value reuse the query's input and up the gate's.
    private var roundedSource: (pointer: UnsafeMutablePointer<Float>, rows: Int)?

    /// Dequantizes every layer projection to f32 (the slow part of loading: ~1 s for a 135M model).
    ///
    /// - Parameters:
    ///   - cache: must use `model.kvCacheLayout(...)` (fingerprint, heads and head dimension are checked).
    ///   - threads: worker threads, the caller's included.
    ///   - maxContext: defaults to the model's trained context length.
    ///   - roundsActivations: round activations through 8-bit blocks before every product with quantized
    ///     weights, as the decode kernels and llama.cpp do. On (the default), a prompt's KV and logits track the
    ///     decode path's and llama.cpp's closely (greedy continuations part from llama.cpp's only where its own
    ///     top-2 gap is < 0.2). Off, products are exact f32.
    ///   - weights: f32 projections made for `model` by another engine (two engines on one model, e.g. one per
    ///     thread, then hold them once); by default this engine dequantizes its own.
    public init(
        model: TransformerModel, cache: PagedKVCache, threads: Int = 1, chunkSize: Int = 512, maxContext: Int? = nil,
        roundsActivations: Bool = true, weights: PrefillWeights? = nil
    ) throws(InferenceError) {
        let context = try Self.validate(
            model: model, cache: cache, threads: threads, rows: chunkSize, rowsName: "chunk size", maxContext: maxContext)
        let c = model.configuration
        self.model = model
        self.cache = cache
        self.chunkSize = chunkSize
        self.maxContext = context
        self.pool = ThreadPool(threads: threads)
        openblas_set_num_threads(1)
        if let weights {
            guard weights.modelFingerprint == model.fingerprint else {
                throw InferenceError(
                    .layoutMismatch, "f32 weights of model \(weights.modelFingerprint) given for model \(model.fingerprint)")
            }
            self.weights = weights
        } else {
            self.weights = PrefillWeights(model: model, pool: pool)
        }
        projections = self.weights.projections
        rowUnit = SgemmRowUnit.unit(
            for: model.weights.layers.flatMap { layer in
                LayerProjection.allCases.map { SgemmRowUnit.Shape(columns: layer[$0].rows, inner: layer[$0].columns) }
            })
        // A chunk starting at a row of residue up to rowUnit - 1, padded to whole units.
        passRows = (chunkSize + 2 * rowUnit - 2) / rowUnit * rowUnit
        scratch = ForwardScratch(configuration: c, maxRows: passRows)
        access = KVCacheAccess(cache: cache)
        let tile = Self.attentionTile
        tiledContext = (context + tile - 1) / tile * tile
        keys = .allocate(capacity: c.kvHeadCount * tiledContext * c.headDimension)
        values = .allocate(capacity: c.kvHeadCount * tiledContext * c.headDimension)
        attentionScratch = .allocate(capacity: pool.threadCount * tile * (tiledContext + 2 * c.headDimension))
        self.roundsActivations = roundsActivations
        roundedInput = .allocate(
            capacity: roundsActivations ? passRows * max(c.embeddingLength, c.feedForwardLength, c.queryDimension) : 1)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
        attentionScratch.deallocate()
        roundedInput.deallocate()
    }

    /// Appends `tokens` to `sequence` (running them through the model, K/V into the cache) and returns the
    /// logits `[vocab]` after the last one.
    ///
    /// Throws `.invalidArgument` for an empty prompt or an out-of-range token, `.contextOverflow` past
    /// `maxContext`, `.kvCacheFull` when blocks run out (the sequence keeps the chunks already run).
    public func prefill(_ tokens: [Int32], sequence: SequenceID) throws(InferenceError) -> [Float] {
        try prefill(tokens, sequence: sequence, onLayerComplete: nil)
    }

    /// `prefill(_:sequence:)`, calling `onLayerComplete(L)` on the calling thread as soon as layer L holds the K/V
    /// of every token of the sequence (during the last chunk, right after that chunk's rows of layer L are stored,
    /// before layer L+1 runs), so a caller can ship layer L while the next one computes.
    ///
    /// The callback may read the sequence's layer L from the cache (e.g. `exportLayer`) but must not change the
    /// cache; it is called once per layer, in order, and not at all if the call throws before the last chunk.
    public func prefill(
        _ tokens: [Int32], sequence: SequenceID, onLayerComplete: ((Int) -> Void)?
    ) throws(InferenceError) -> [Float] {
        guard !tokens.isEmpty else { throw InferenceError(.invalidArgument, "prefill needs at least one token") }
        try checkTokens(tokens)
        let start = try cache.tokenCount(sequence)
        guard start + tokens.count <= maxContext else {
            throw InferenceError(
                .contextOverflow, "\(start) cached + \(tokens.count) new tokens exceed the context of \(maxContext)")
        }
        var offset = 0
        while true {
            let n = min(chunkSize, tokens.count - offset)
            let isLast = offset + n == tokens.count
            let chunk = PrefillChunk(sequence: sequence, tokens: Array(tokens[offset..<offset + n]), completesPrompt: isLast)
            let logits = try run([chunk], onLayerComplete: onLayerComplete.map { observe in { _, layer in observe(layer) } })
            if isLast { return logits[0] }
            offset += n
        }
    }

    /// One forward pass over several sequences at once: each chunk's tokens are appended to its sequence, and all
    /// rows share the projections' matrix products (one weight read for the whole pass), while attention runs per
    /// sequence over its own history. Returns, in order, the logits `[vocab]` after the last token of each chunk
    /// that `completesPrompt`. Chunks whose layout by position (see the type's notes) would need more padding
    /// than the buffers hold beside the others run in a pass of their own, with the same results.
    ///
    /// `onLayerComplete(i, L)` is called on the calling thread as soon as layer L holds chunk i's K/V, for the chunks
    /// that complete their prompt, with the guarantees of `prefill(_:sequence:onLayerComplete:)`.
    ///
    /// Throws `.invalidArgument` for no chunks, an empty chunk, an out-of-range token, more rows than `chunkSize`
    /// or one sequence twice; `.contextOverflow` past `maxContext`; `.kvCacheFull` when blocks run out. A pass
    /// that throws leaves every sequence as it was.
    public func run(
        _ chunks: [PrefillChunk], onLayerComplete: ((_ chunk: Int, _ layer: Int) -> Void)? = nil
    ) throws(InferenceError) -> [[Float]] {
        defer {
            layerObserver = nil
            segments = []
        }
        guard !chunks.isEmpty else { throw InferenceError(.invalidArgument, "a prefill pass needs at least one chunk") }
        var rows = 0
        var seen = Set<SequenceID>()
        var starts: [Int] = []
        for (i, chunk) in chunks.enumerated() {
            guard !chunk.tokens.isEmpty else { throw InferenceError(.invalidArgument, "chunk \(i) of the pass has no tokens") }
            guard seen.insert(chunk.sequence).inserted else {
                throw InferenceError(.invalidArgument, "chunk \(i) names a sequence that is already in the pass")
            }
            try checkTokens(chunk.tokens)
            let start = try cache.tokenCount(chunk.sequence)
            guard start + chunk.tokens.count <= maxContext else {
                throw InferenceError(
                    .contextOverflow,
                    "\(start) cached + \(chunk.tokens.count) new tokens exceed the context of \(maxContext)")
            }
            starts.append(start)
            rows += chunk.tokens.count
        }
        guard rows <= chunkSize else {
            throw InferenceError(.invalidArgument, "a prefill pass holds at most \(chunkSize) tokens, got \(rows)")
        }

        var planned: [Segment] = []
        for (i, chunk) in chunks.enumerated() {
            let first: Int
            do { first = try cache.append(chunk.sequence, count: chunk.tokens.count) } catch {
                for (j, done) in chunks[..<i].enumerated() { try? cache.truncate(done.sequence, to: starts[j]) }
                throw error
            }
            planned.append(
                Segment(
                    chunk: i, table: try cache.blockTable(chunk.sequence), first: first, row: 0,
                    count: chunk.tokens.count, completes: chunk.completesPrompt))
        }
        layerObserver = onLayerComplete
        var logits: [[Float]] = []
        // Laid out by position, chunks need up to a unit of padding each: those that do not fit in the buffers
        // beside the others run in a forward pass of their own, with the same bits.
        var pass: [Segment] = []
        var end = 0
        for var segment in planned {
            segment.row = end + ((segment.first - end) % rowUnit + rowUnit) % rowUnit
            if !pass.isEmpty && (segment.row + segment.count + rowUnit - 1) / rowUnit * rowUnit > passRows {
                logits += forward(pass, chunks)
                pass = []
                segment.row = segment.first % rowUnit
            }
            end = segment.row + segment.count
            pass.append(segment)
        }
        logits += forward(pass, chunks)
        return logits
    }

    /// One forward pass over `pass`, whose rows are laid out: the logits of its completing chunks, in order.
    private func forward(_ pass: [Segment], _ chunks: [PrefillChunk]) -> [[Float]] {
        let last = pass[pass.count - 1]
        let filled = last.row + last.count
        let rows = (filled + rowUnit - 1) / rowUnit * rowUnit
        // Padding rows run token 0 at position 0: a dummy whose K/V are not stored and whose outputs nothing reads.
        var tokens = [Int32](repeating: 0, count: rows), positions = [Int32](repeating: 0, count: rows)
        var logitRows: [Int32] = []
        for segment in pass {
            for (i, token) in chunks[segment.chunk].tokens.enumerated() {
                tokens[segment.row + i] = token
                positions[segment.row + i] = Int32(segment.first + i)
            }
            if segment.completes { logitRows.append(Int32(segment.row + segment.count - 1)) }
        }
        segments = pass

        let vocabulary = model.configuration.vocabularySize
        let logitRowCount = logitRows.count
        // A pass without a completing chunk wants no logits; the buffers keep one element so their base
        // addresses exist.
        if logitRows.isEmpty { logitRows.append(0) }
        var logits = [Float](repeating: 0, count: logitRows.count * vocabulary)
        tokens.withUnsafeBufferPointer { t in
            positions.withUnsafeBufferPointer { p in
                logitRows.withUnsafeBufferPointer { r in
                    logits.withUnsafeMutableBufferPointer { out in
                        runForward(
                            model: model, backend: self, scratch: scratch, tokens: t.baseAddress!,
                            positions: p.baseAddress!, rows: rows, observedRows: filled, logitRows: r.baseAddress!,
                            logitRowCount: logitRowCount, logits: out.baseAddress!)
                    }
                }
            }
        }
        return (0..<logitRowCount).map { Array(logits[$0 * vocabulary..<($0 + 1) * vocabulary]) }
    }

    private func checkTokens(_ tokens: [Int32]) throws(InferenceError) {
        let vocabulary = model.configuration.vocabularySize
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw InferenceError(.invalidArgument, "token id \(bad) is outside the vocabulary (0..<\(vocabulary))")
        }
    }

    /// The checks both engines make at construction; returns the context length to use.
    static func validate(
        model: TransformerModel, cache: PagedKVCache, threads: Int, rows: Int, rowsName: String, maxContext: Int?
    ) throws(InferenceError) -> Int {
        try Kernels.checkSelection()
        try check(cache: cache, model: model)
        guard threads >= 1 else { throw InferenceError(.invalidArgument, "threads must be at least 1, got \(threads)") }
        guard rows >= 1 else { throw InferenceError(.invalidArgument, "\(rowsName) must be at least 1, got \(rows)") }
        let trained = model.configuration.contextLength
        let context = maxContext ?? trained
        guard context >= 1 && context <= trained else {
            throw InferenceError(.invalidArgument, "max context must be in 1...\(trained), got \(context)")
        }
        return context
    }

    static func check(cache: PagedKVCache, model: TransformerModel) throws(InferenceError) {
        let l = cache.layout, c = model.configuration
        guard l.modelFingerprint == model.fingerprint, l.layers == c.layerCount, l.kvHeads == c.kvHeadCount,
            l.headDim == c.headDimension
        else {
            throw InferenceError(
                .layoutMismatch,
                "KV cache layout (\(l.layers) layers, \(l.kvHeads) KV heads, head dim \(l.headDim), model \(l.modelFingerprint)) "
                    + "does not fit model \(model.fingerprint)")
        }
    }
}

extension PrefillEngine: TransformerBackend {
    /// y = x·Wᵀ, the rows (whole units, see `rowUnit`) split across threads, one single-threaded sgemm each.
    func linear(_ p: LayerProjection, layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>) {
        precondition(rows % rowUnit == 0, "linear: \(rows) rows are not whole units of \(rowUnit)")
        let w = model.weights.layers[layer][p]
        let weights = projections[layer][p.rawValue]
        let out = w.rows, inner = w.columns
        let source = x
        var x = UnsafePointer(x)
        if roundsActivations && w.isQuantized {
            let rounded = roundedInput
            let sharesInput = p == .key || p == .value || p == .up
            if !sharesInput || roundedSource?.pointer != source || roundedSource?.rows != rows {
                let parts = min(pool.threadCount, rows)
                pool.parallelFor(parts) { part in
                    let begin = rows * part / parts, end = rows * (part + 1) / parts
                    Kernels.roundActivations(for: w, x + begin * inner, rounded + begin * inner, rows: end - begin)
                }
                roundedSource = (source, rows)
            }
            x = UnsafePointer(rounded)
        }
        let units = rows / rowUnit, unit = rowUnit
        let parts = min(pool.threadCount, units)
        pool.parallelFor(parts) { part in
            let begin = units * part / parts * unit, end = units * (part + 1) / parts * unit
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(end - begin), Int32(out), Int32(inner),
                1, x + begin * inner, Int32(inner), weights, Int32(inner), 0, y + begin * out, Int32(out))
        }
    }

    /// Stores every sequence's rows of K/V, then per sequence attends (see `attend`); padding rows get zeros.
    func attention(
        layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows n: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        let kvd = model.configuration.kvDimension, qd = model.configuration.queryDimension
        for segment in segments {
            segment.table.withUnsafeBufferPointer { t in
                for i in 0..<segment.count {
                    let row = segment.row + i
                    access.store(
                        layer: layer, table: t.baseAddress!, position: segment.first + i, key: k + row * kvd,
                        value: v + row * kvd)
                }
            }
        }
        if let layerObserver {
            for segment in segments where segment.completes { layerObserver(segment.chunk, layer) }
        }
        var filled = 0
        for segment in segments {
            (output + filled * qd).update(repeating: 0, count: (segment.row - filled) * qd)
            attend(segment, layer: layer, q: q, output: output)
            filled = segment.row + segment.count
        }
        (output + filled * qd).update(repeating: 0, count: (n - filled) * qd)
    }

    /// One sequence's attention. Gathers each KV head's keys and values to f32 by position, zero from the
    /// sequence's end to its last tile's; then per (head, block of `attentionTile` positions from a multiple of
    /// it): the block's queries at their offsets in a zeroed tile, S = scale · Q·Kᵀ per key tile (sgemm), the
    /// causal (and sliding-window) softmax of each of the sequence's rows, and O = Σ S·V over the tiles in order
    /// (sgemm with beta 1). Keys past a row's position get probability 0, and their values are finite.
    private func attend(_ segment: Segment, layer: Int, q: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let c = model.configuration
        let hd = c.headDimension, qd = c.queryDimension
        let tile = Self.attentionTile, stride = tiledContext * hd
        let first = segment.first, total = first + segment.count
        let q = q + segment.row * qd, output = output + segment.row * qd
        let access = self.access, keys = self.keys, values = self.values, scratch = attentionScratch
        let firstBlock = first / tile, blocks = (total - 1) / tile - firstBlock + 1
        let gatheredFrom = c.firstVisiblePosition(layer: layer, position: firstBlock * tile) / tile * tile
        let keyEnd = (firstBlock + blocks) * tile
        segment.table.withUnsafeBufferPointer { t in
            let table = t.baseAddress!
            pool.parallelFor(c.kvHeadCount) { g in
                let k = keys + g * stride, v = values + g * stride
                access.gather(layer: layer, table: table, head: g, from: gatheredFrom, count: total, keys: k, values: v)
                (k + total * hd).update(repeating: 0, count: (keyEnd - total) * hd)
                (v + total * hd).update(repeating: 0, count: (keyEnd - total) * hd)
            }
        }
        let units = c.headCount * blocks
        let group = c.headCount / c.kvHeadCount
        let scale = c.attentionScale
        let threads = pool.threadCount
        let perThread = tile * (tiledContext + 2 * hd)
        pool.parallelFor(threads) { thread in
            let s = scratch + thread * perThread
            let queries = s + tile * tiledContext, out = queries + tile * hd
            // Later blocks see more keys: interleave units so threads get similar work.
            for unit in Swift.stride(from: thread, to: units, by: threads) {
                let h = unit % c.headCount, start = (firstBlock + unit / c.headCount) * tile
                let low = max(first, start), high = min(total, start + tile)
                queries.update(repeating: 0, count: tile * hd)
                for p in low..<high { (queries + (p - start) * hd).update(from: q + (p - first) * qd + h * hd, count: hd) }
                // Key tiles from the one holding the block's first visible position to the block's own.
                let firstTile = c.firstVisiblePosition(layer: layer, position: start) / tile
                let tiles = start / tile - firstTile + 1, width = tiles * tile
                let kh = keys + (h / group) * stride + firstTile * tile * hd
                let vh = values + (h / group) * stride + firstTile * tile * hd
                for j in 0..<tiles {
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tile), Int32(tile), Int32(hd),
                        scale, queries, Int32(hd), kh + j * tile * hd, Int32(hd), 0, s + j * tile, Int32(width))
                }
                for p in low..<high {
                    let row = s + (p - start) * width
                    // Causal: position p sees keys lo...p.
                    let lo = c.firstVisiblePosition(layer: layer, position: p) - firstTile * tile
                    let last = p - firstTile * tile
                    VectorMath.softmax(row + lo, count: last - lo + 1)
                    if lo > 0 { row.update(repeating: 0, count: lo) }
                    if last + 1 < width { (row + last + 1).update(repeating: 0, count: width - last - 1) }
                }
                for j in 0..<tiles {
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tile), Int32(hd), Int32(tile),
                        1, s + j * tile, Int32(width), vh + j * tile * hd, Int32(hd), j == 0 ? 0 : 1, out, Int32(hd))
                }
                for p in low..<high { (output + (p - first) * qd + h * hd).update(from: out + (p - start) * hd, count: hd) }
            }
        }
    }

    /// The logit rows' logits with the quantized output matrix (a 1-row sgemm would be slower than the kernel).
    func logits(_ x: UnsafeMutablePointer<Float>, rows: Int, _ logits: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        Kernels.matmul(model.weights.output, input: x, batch: rows, output: logits, pool: pool)
    }
}

/// One sequence's part of a `PrefillEngine.run(_:onLayerComplete:)` pass.
public struct PrefillChunk: Sendable, Equatable {
    public var sequence: SequenceID
    /// Appended after the sequence's cached tokens.
    public var tokens: [Int32]
    /// Whether these are the prompt's last tokens: the pass then returns logits after the last one and reports
    /// the sequence's finished layers.
    public var completesPrompt: Bool

    public init(sequence: SequenceID, tokens: [Int32], completesPrompt: Bool) {
        self.sequence = sequence
        self.tokens = tokens
        self.completesPrompt = completesPrompt
    }
}

extension PrefillEngine {
    /// A chunk placed in a forward pass: its index in the run, block table, first position and first row.
    struct Segment {
        var chunk: Int
        var table: [Int32]
        var first: Int
        var row: Int
        var count: Int
        var completes: Bool
    }
}

/// A model's layer projections dequantized to f32 for the prefill path's sgemm (~4 bytes per parameter), which
/// several `PrefillEngine`s of that model may share: they only read them.
public final class PrefillWeights: @unchecked Sendable {
    public let modelFingerprint: String
    /// `[layer][projection]`: f32 `[rows × columns]`, row-major like the GGUF rows.
    let projections: [[UnsafeMutablePointer<Float>]]

    /// Dequantizes every layer projection of `model` (the slow part of loading: ~1 s for a 135M model).
    public convenience init(model: TransformerModel, threads: Int = 1) {
        self.init(model: model, pool: ThreadPool(threads: threads))
    }

    init(model: TransformerModel, pool: ThreadPool) {
        modelFingerprint = model.fingerprint
        var projections: [[UnsafeMutablePointer<Float>]] = []
        for layer in model.weights.layers {
            var dense: [UnsafeMutablePointer<Float>] = []
            for p in LayerProjection.allCases {
                let w = layer[p]
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: w.rows * w.columns)
                Kernels.dequantizeAll(w, into: buffer, pool: pool)
                dense.append(buffer)
                // The quantized bytes are not needed again on this path: drop them from RSS (a decode engine
                // sharing the mapping faults them back in from the page cache).
                PageMemory.releaseFilePages(w.base, byteCount: w.byteCount)
            }
            projections.append(dense)
        }
        self.projections = projections
    }

    deinit {
        for layer in projections { for p in layer { p.deallocate() } }
    }
}
