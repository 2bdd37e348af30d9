import CBLAS
import CKernels

/// One new token for each of up to `maxBatch` sequences per step.
public struct DecodeInput: Sendable, Equatable {
    public var sequence: SequenceID
    public var token: Int32
    public init(sequence: SequenceID, token: Int32) {
        self.sequence = sequence
        self.token = token
    }
}

/// The bandwidth-bound path: a step runs one token for each of a batch of sequences of different lengths, with
/// kernels that read the quantized weights in place (each weight row streamed once for the whole batch).
///
/// The continuous-batching primitive: sequences may join and leave between steps, and each row's result equals
/// running its sequence alone. Holds no dequantized weights. Buffers are sized at init for `maxBatch` rows, so a
/// step allocates nothing but the cache's block-table copies. Not thread-safe: one serial owner calls it.
public final class DecodeEngine: @unchecked Sendable {
    /// Sees every intermediate tensor of this engine's forward passes while set (see `Activation`); set it
    /// only between passes, from the thread that runs them.
    public var activationObserver: ActivationObserver?

    public let model: TransformerModel
    public let cache: PagedKVCache
    public let maxBatch: Int
    /// Highest position + 1 a sequence may reach.
    public let maxContext: Int
    public var threadCount: Int { pool.threadCount }

    let pool: ThreadPool
    /// Interleaved copies of the quantized matrices where the CPU runs their kernel (shared with the model).
    private let interleaved: InterleavedWeights
    private let scratch: ForwardScratch
    private let access: KVCacheAccess
    private let maxBlocks: Int
    /// Each row's block table, `[maxBatch × maxBlocks]`.
    private let tables: UnsafeMutablePointer<Int32>
    private let positions: UnsafeMutablePointer<Int32>
    private let tokens: UnsafeMutablePointer<Int32>
    private let logitRows: UnsafeMutablePointer<Int32>
    /// Per thread: one query group's attention scores, `[group × maxContext]`.
    private let attentionWorkspace: UnsafeMutablePointer<Float>
    private let workspaceStride: Int
    /// `[maxBatch × vocab]`, valid until the next step.
    private let logitBuffer: UnsafeMutablePointer<Float>
    private var rowCount = 0

    /// - Parameters:
    ///   - cache: must use `model.kvCacheLayout(...)`.
    ///   - threads: worker threads, the caller's included.
    ///   - maxBatch: most rows (sequences) per step.
    ///   - maxContext: defaults to the model's trained context length.
    public init(
        model: TransformerModel, cache: PagedKVCache, threads: Int = 1, maxBatch: Int = 8, maxContext: Int? = nil
    ) throws(InferenceError) {
        let context = try PrefillEngine.validate(
            model: model, cache: cache, threads: threads, rows: maxBatch, rowsName: "max batch", maxContext: maxContext)
        let c = model.configuration
        self.model = model
        self.cache = cache
        self.maxBatch = maxBatch
        self.maxContext = context
        pool = ThreadPool(threads: threads)
        interleaved = model.interleavedWeights
        scratch = ForwardScratch(configuration: c, maxRows: maxBatch)
        access = KVCacheAccess(cache: cache)
        maxBlocks = (context + cache.layout.blockSize - 1) / cache.layout.blockSize
        tables = .allocate(capacity: maxBatch * maxBlocks)
        positions = .allocate(capacity: maxBatch)
        tokens = .allocate(capacity: maxBatch)
        logitRows = .allocate(capacity: maxBatch)
        for i in 0..<maxBatch { logitRows[i] = Int32(i) }
        workspaceStride = context * (c.headCount / c.kvHeadCount)
        attentionWorkspace = .allocate(capacity: threads * workspaceStride)
        openblas_set_num_threads(1)
        logitBuffer = .allocate(capacity: maxBatch * c.vocabularySize)
        logitBuffer.initialize(repeating: 0, count: maxBatch * c.vocabularySize)
    }

    deinit {
        tables.deallocate()
        positions.deallocate()
        tokens.deallocate()
        logitRows.deallocate()
        attentionWorkspace.deallocate()
        logitBuffer.deallocate()
    }

    /// Appends each input's token to its sequence and computes the next-token logits of every row.
    ///
    /// Inputs naming the same sequence more than once run as consecutive positions (causally). On error no
    /// sequence is changed. Read the results with `withLogits(row:_:)` / `logits(row:)` before the next step.
    public func step(_ inputs: [DecodeInput]) throws(InferenceError) {
        try run(inputs, logitRowCount: inputs.count)
    }

    /// Runs a prompt through the decode path (`maxBatch` tokens per pass) and returns the logits after its last
    /// token: lets a decode-only process continue a sequence it did not prefill.
    public func ingest(_ prompt: [Int32], sequence: SequenceID) throws(InferenceError) -> [Float] {
        guard !prompt.isEmpty else { throw InferenceError(.invalidArgument, "ingest needs at least one token") }
        var offset = 0
        while offset < prompt.count {
            let n = min(maxBatch, prompt.count - offset)
            let isLast = offset + n == prompt.count
            // Only the chunk's last row needs logits: list it first.
            logitRows[0] = Int32(n - 1)
            defer { for i in 0..<maxBatch { logitRows[i] = Int32(i) } }
            try run(prompt[offset..<(offset + n)].map { DecodeInput(sequence: sequence, token: $0) }, logitRowCount: isLast ? 1 : 0)
            offset += n
        }
        return logits(row: 0)
    }

    /// Lends row `row`'s logits `[vocab]` from the last step (mutable: samplers modify them in place).
    public func withLogits<R>(row: Int, _ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(row >= 0 && row < max(rowCount, 1), "row \(row) is not part of the last step")
        let vocabulary = model.configuration.vocabularySize
        return try body(UnsafeMutableBufferPointer(start: logitBuffer + row * vocabulary, count: vocabulary))
    }

    /// The most likely next token of row `row` (greedy choice; ties to the lowest id), without copying logits.
    public func argmax(row: Int) -> Int32 {
        withLogits(row: row) { logits in Int32(bk_argmax(Kernels.isa, logits.baseAddress!, logits.count)) }
    }

    /// A copy of row `row`'s logits from the last step.
    public func logits(row: Int) -> [Float] { withLogits(row: row) { Array($0) } }

    private func run(_ inputs: [DecodeInput], logitRowCount: Int) throws(InferenceError) {
        let n = inputs.count
        guard n >= 1 && n <= maxBatch else {
            throw InferenceError(.invalidArgument, "a step takes 1...\(maxBatch) inputs, got \(n)")
        }
        let vocabulary = model.configuration.vocabularySize
        for input in inputs {
            guard input.token >= 0 && Int(input.token) < vocabulary else {
                throw InferenceError(.invalidArgument, "token id \(input.token) is outside the vocabulary (0..<\(vocabulary))")
            }
            let count = try cache.tokenCount(input.sequence)
            let extra = inputs.lazy.filter { $0.sequence == input.sequence }.count
            guard count + extra <= maxContext else {
                throw InferenceError(.contextOverflow, "sequence \(input.sequence.rawValue) would exceed the context of \(maxContext)")
            }
        }
        // Grow every sequence first; undo all of it if the pool runs out part way.
        var grown: [(SequenceID, Int)] = []
        for (i, input) in inputs.enumerated() {
            do {
                let before = try cache.tokenCount(input.sequence)
                positions[i] = Int32(try cache.append(input.sequence, count: 1))
                grown.append((input.sequence, before))
            } catch {
                for (sequence, count) in grown.reversed() { try? cache.truncate(sequence, to: count) }
                throw error
            }
            tokens[i] = input.token
        }
        for (i, input) in inputs.enumerated() {
            let table = try cache.blockTable(input.sequence)
            for (j, block) in table.enumerated() { tables[i * maxBlocks + j] = block }
        }
        rowCount = n
        runForward(
            model: model, backend: self, scratch: scratch, tokens: tokens, positions: positions, rows: n,
            logitRows: logitRows, logitRowCount: logitRowCount, logits: logitBuffer)
    }
}

extension DecodeEngine: TransformerBackend {
    func linear(_ p: LayerProjection, layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>) {
        Kernels.matmul(
            model.weights.layers[layer][p], interleaved: interleaved.layers[layer][p.rawValue], input: x, batch: rows,
            output: y, pool: pool)
    }

    /// Q, K and V in one fork/join, over one quantization of `x`.
    func attentionProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, q: UnsafeMutablePointer<Float>,
        k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    ) {
        project(layer: layer, x, rows: rows, (.query, q), (.key, k), (.value, v))
    }

    /// Gate and up in one fork/join, each task applying the activation to the rows it just computed.
    func gatedProjections(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, ff: Int, gate: UnsafeMutablePointer<Float>,
        up: UnsafeMutablePointer<Float>, activation: GatedActivation
    ) {
        project(layer: layer, x, rows: rows, (.gate, gate), (.up, up)) { range in
            for i in 0..<rows {
                activation.apply(gate + i * ff + range.lowerBound, up + i * ff + range.lowerBound, count: range.count)
            }
        }
    }

    /// Layer `layer`'s projections `outputs` of `x` as one `Kernels.matmul(group:)`.
    private func project(
        layer: Int, _ x: UnsafeMutablePointer<Float>, rows: Int,
        _ outputs: (LayerProjection, UnsafeMutablePointer<Float>)..., epilogue: ((Range<Int>) -> Void)? = nil
    ) {
        let w = model.weights.layers[layer], copies = interleaved.layers[layer]
        withUnsafeTemporaryAllocation(of: Kernels.Projection.self, capacity: outputs.count) { parts in
            for (i, (p, y)) in outputs.enumerated() {
                parts.initializeElement(at: i, to: .init(weights: w[p], interleaved: copies[p.rawValue], output: y))
            }
            defer { parts.deinitialize() }
            Kernels.matmul(group: UnsafeBufferPointer(parts), input: x, batch: rows, pool: pool, epilogue: epilogue)
        }
    }

    /// Stores every row's K/V, then per (row, KV head) computes, for the query heads sharing that KV head,
    /// S = scale · Q·Kᵀ, softmax, O = S·V over the positions the layer lets the row see, reading the sequence's
    /// keys and values from the cache in place.
    func attention(
        layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows n: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        let c = model.configuration
        let hd = c.headDimension, qd = c.queryDimension, kvd = c.kvDimension, kvHeads = c.kvHeadCount
        let group = c.headCount / kvHeads
        let access = self.access, tables = self.tables, positions = self.positions
        let maxBlocks = self.maxBlocks, workspace = self.attentionWorkspace, workspaceStride = self.workspaceStride
        for i in 0..<n {
            access.store(
                layer: layer, table: tables + i * maxBlocks, position: Int(positions[i]), key: k + i * kvd,
                value: v + i * kvd)
        }
        let scale = c.attentionScale
        let units = n * kvHeads
        let threads = min(pool.threadCount, units)
        pool.parallelFor(threads) { thread in
            let scores = workspace + thread * workspaceStride
            for unit in stride(from: thread, to: units, by: threads) {
                let i = unit / kvHeads, g = unit % kvHeads
                // The group's query heads are adjacent, and so are their outputs.
                let heads = i * qd + g * group * hd
                let position = Int(positions[i])
                access.attend(
                    layer: layer, table: tables + i * maxBlocks, head: g,
                    first: c.firstVisiblePosition(layer: layer, position: position), count: position + 1,
                    queries: q + heads, group: group, scale: scale, scores: scores, output: output + heads)
            }
        }
    }

    func logits(_ x: UnsafeMutablePointer<Float>, rows: Int, _ logits: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        Kernels.matmul(model.weights.output, interleaved: interleaved.output, input: x, batch: rows, output: logits, pool: pool)
    }
}
