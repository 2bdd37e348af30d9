import Foundation
import Inference
import KVTransport
import Synchronization
import Tokenization

/// The decode worker's engine room: one scheduler thread owns the `DecodeEngine` (and, when the worker may
/// run prompts itself, a `PrefillEngine`) and the `PagedKVCache`, and runs continuous batching over every
/// active sequence: sequences join between steps and leave when they finish.
///
/// Sequences come from two places:
/// - **KV transfers.** `open` with `prefillHere == false` reserves room (the prompt's blocks are allocated at
///   once, its generation budget is committed) and answers `.opened`; the scheduler is then the
///   `KVTransferReceiver` for that request id: layers land straight in the reserved blocks, and the
///   completion's sampler state continues sampling exactly where the prefill worker stopped. A transfer for
///   an id nobody opened is refused; one that does not complete within the transfer timeout fails the request
///   with `.timeout` and frees its reservation.
/// - **Local prompts** (`prefillHere`): run on the prefill path when the worker has a `PrefillEngine`, else
///   through `DecodeEngine.ingest`.
///
/// Room policy: a request is admitted only when the blocks for `prompt + maxNewTokens` (capped at the
/// context) fit beside the budgets already committed to live requests; otherwise it fails at once with
/// `.noRoom`. So no running sequence can ever run out of KV mid-generation, and a transfer never fails for
/// space (no preemption is needed). The price is that short answers reserve more than they use.
///
/// Each request's updates go to its own `AsyncStream` continuation, yielded from the scheduler thread: no
/// actor hop per token. `cancel` (or the consumer dropping the stream) frees the request's KV before the next
/// step. Call `start()` once, `shutdown()` to stop; requests left then fail with `.internal`.
public final class DecodeScheduler: KVTransferReceiver, @unchecked Sendable {
    /// Sizes and defaults, with the defaults a worker uses.
    public struct Configuration: Sendable {
        /// KV cache blocks shared by all requests (16 tokens each for the default model).
        public var kvBlocks: Int
        /// Most sequences in one decode step; more active requests take turns.
        public var maxBatch: Int = 8
        /// Compute threads of each engine.
        public var threads: Int = 1
        /// Tokens a sequence may hold (prompt and generation); nil: the model's trained context.
        public var maxContext: Int?
        /// Build a `PrefillEngine` for local prompts (role `both`); else they go through `ingest`.
        public var prefillEngine: Bool = false
        /// The prefill engine's f32 weights when another engine of this process already holds them (role `both`:
        /// the prefill queue's engine); nil: it dequantizes its own.
        public var prefillWeights: PrefillWeights?
        /// Longest wait for a transfer when the request names none (default 30 s).
        public var defaultTransferTimeout: Duration = .seconds(30)

        public init(kvBlocks: Int, maxBatch: Int = 8, threads: Int = 1, maxContext: Int? = nil, prefillEngine: Bool = false) {
            self.kvBlocks = kvBlocks
            self.maxBatch = maxBatch
            self.threads = threads
            self.maxContext = maxContext
            self.prefillEngine = prefillEngine
        }
    }

    /// Counters for load reports; read from any thread.
    public struct Load: Sendable, Equatable {
        /// Requests opened and not yet generating: waiting for the scheduler or for their KV transfer.
        public var waiting: Int
        /// Sequences generating.
        public var active: Int
        /// Blocks not committed to any live request (reservations count as used).
        public var uncommittedBlocks: Int
        /// Blocks not held by any sequence right now.
        public var freeBlocks: Int
        public var totalBlocks: Int
        /// The most rows one decode step has run since the start.
        public var largestBatch: Int
        /// Requests that ended since the start: finished normally, cancelled, or failed otherwise.
        public var finished: Int
        public var cancelled: Int
        public var failed: Int
    }

    public let tokenizer: Tokenizer
    public let identity: KVCompatibilityIdentity
    /// Tokens a sequence may hold.
    public let contextLength: Int
    public let configuration: Configuration
    /// Time from `open` to the first token, recent requests (seconds).
    public let timeToFirstToken = LatencyWindow()
    /// Mean time between tokens of recent finished requests (seconds).
    public let timePerOutputToken = LatencyWindow()

    private let decode: DecodeEngine
    private let prefill: PrefillEngine?
    private let cache: PagedKVCache
    private let vocabularySize: Int
    /// Every live request by id: for duplicates, transfers and cancellation. Removed when the request ends.
    private let registry = Mutex<[String: Job]>([:])
    private let inbox = Mutex(Inbox())
    /// Signalled when work arrives, a transfer progresses, or on shutdown.
    private let wake = NSCondition()
    private let counters = Mutex(Counters())

    // Scheduler thread only.
    private var waiting: [Job] = []
    private var active: [Job] = []
    private var committedBlocks = 0
    /// Jobs per stage, kept apart from the arrays so counters can be published while those are being filtered.
    private var waitingCount = 0
    private var activeCount = 0
    private var stepInputs: [DecodeInput] = []
    private var largestBatch = 0

    private struct Counters {
        /// Opened, not yet seen by the scheduler.
        var queued = 0
        var waitingTransfers = 0
        var active = 0
        var free = 0
        var total = 0
        var uncommitted = 0
        var largestBatch = 0
        var finished = 0
        var cancelled = 0
        var failed = 0
    }

    private struct Inbox {
        var opens: [Job] = []
        var running = false
        var stopped = false
    }

    /// - Parameters:
    ///   - identity: must describe `model`, `tokenizer` and the cache layout (`KVCompatibilityIdentity(model:tokenizer:layout:)`).
    public init(
        model: TransformerModel, tokenizer: Tokenizer, identity: KVCompatibilityIdentity, configuration: Configuration
    ) throws(WorkerError) {
        guard configuration.kvBlocks >= 1 else {
            throw WorkerError(.invalidArgument, "the KV cache needs at least one block, got \(configuration.kvBlocks)")
        }
        do {
            cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: configuration.kvBlocks)
            decode = try DecodeEngine(
                model: model, cache: cache, threads: configuration.threads, maxBatch: configuration.maxBatch,
                maxContext: configuration.maxContext)
            if configuration.prefillEngine {
                prefill = try PrefillEngine(
                    model: model, cache: cache, threads: configuration.threads, maxContext: configuration.maxContext,
                    weights: configuration.prefillWeights)
            } else {
                prefill = nil
            }
        } catch {
            throw WorkerError(.invalidArgument, "cannot build the decode engine: \(error.message)", cause: error)
        }
        let layout = cache.layout
        guard identity.layers == layout.layers, identity.kvHeads == layout.kvHeads, identity.headDim == layout.headDim,
            identity.blockSize == layout.blockSize, identity.elementType.byteWidth == layout.dataType.byteWidth
        else {
            throw WorkerError(.invalidArgument, "the KV identity does not describe the decode engine's cache layout")
        }
        self.tokenizer = tokenizer
        self.identity = identity
        self.configuration = configuration
        contextLength = min(decode.maxContext, prefill?.maxContext ?? Int.max)
        vocabularySize = model.configuration.vocabularySize
        publishCounters()
    }

    /// Whether local prompts take the prefill (sgemm) path.
    public var hasPrefillEngine: Bool { prefill != nil }

    public var load: Load {
        counters.withLock { c in
            Load(
                waiting: c.queued + c.waitingTransfers, active: c.active, uncommittedBlocks: c.uncommitted,
                freeBlocks: c.free, totalBlocks: c.total, largestBatch: c.largestBatch, finished: c.finished,
                cancelled: c.cancelled, failed: c.failed)
        }
    }

    /// Starts the scheduler thread.
    public func start() {
        let started = inbox.withLock { inbox -> Bool in
            if inbox.running || inbox.stopped { return false }
            inbox.running = true
            return true
        }
        guard started else { return }
        let thread = Thread { [self] in run() }
        thread.name = "baton.decode-scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Stops the scheduler; live requests fail with `.internal`.
    public func shutdown() {
        inbox.withLock { $0.stopped = true }
        signal()
    }

    /// Opens a generation; its updates go to `updates` (see `DecodeUpdate` for the order), which is finished
    /// after the last one. Never throws: a refusal is a `.failed` update.
    public func open(_ request: DecodeRequest, updates: AsyncStream<DecodeUpdate>.Continuation) {
        let prompt = request.prompt
        func refuse(_ kind: DecodeFailureKind, _ message: String) {
            updates.yield(.failed(kind, message))
            updates.finish()
        }
        guard !request.requestID.isEmpty else { return refuse(.invalidArgument, "the request id is empty") }
        guard !prompt.isEmpty else { return refuse(.invalidArgument, "the prompt is empty") }
        guard prompt.count < contextLength else {
            return refuse(.invalidArgument, "the prompt has \(prompt.count) tokens; this worker's context holds \(contextLength)")
        }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            return refuse(.invalidArgument, "prompt token \(bad) is outside the vocabulary (0..<\(vocabularySize))")
        }
        if let maxNew = request.maxNewTokens, maxNew < 1 {
            return refuse(.invalidArgument, "max new tokens must be at least 1, got \(maxNew)")
        }
        let parameters: SamplingParameters
        do { parameters = try request.parameters.validated(vocabularySize: vocabularySize) } catch {
            return refuse(.invalidArgument, error.message)
        }
        let reach = min(contextLength, prompt.count + (request.maxNewTokens ?? contextLength))
        let job = Job(
            request: request, parameters: parameters, updates: updates,
            budgetBlocks: cache.layout.blocks(forTokens: reach),
            deadline: .now + (request.transferTimeout ?? configuration.defaultTransferTimeout))
        let fresh = registry.withLock { jobs -> Bool in
            guard jobs[request.requestID] == nil else { return false }
            jobs[request.requestID] = job
            return true
        }
        guard fresh else { return refuse(.invalidArgument, "request \(request.requestID) is already open on this worker") }
        counters.withLock { $0.queued += 1 }
        let accepted = inbox.withLock { inbox -> Bool in
            guard inbox.running && !inbox.stopped else { return false }
            inbox.opens.append(job)
            return true
        }
        guard accepted else {
            counters.withLock { $0.queued -= 1 }
            _ = registry.withLock { $0.removeValue(forKey: request.requestID) }
            return refuse(.internal, "the decode scheduler is not running")
        }
        signal()
    }

    /// Opens a generation and returns its updates; dropping the stream (or cancelling its consumer) cancels it.
    public func open(_ request: DecodeRequest) -> AsyncStream<DecodeUpdate> {
        let (stream, continuation) = AsyncStream<DecodeUpdate>.makeStream()
        let requestID = request.requestID
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel(requestID: requestID, reason: "the consumer went away") }
        }
        open(request, updates: continuation)
        return stream
    }

    /// Cancels a live request: its KV is freed before the next step, a transfer in progress for it is refused
    /// from its next layer on, and its stream ends with `.failed(.cancelled, reason)`. Returns whether it was live.
    @discardableResult
    public func cancel(requestID: String, reason: String = "cancelled") -> Bool {
        guard let job = registry.withLock({ $0[requestID] }) else { return false }
        job.cancel(reason: reason)
        signal()
        return true
    }

    private func signal() {
        wake.lock()
        wake.signal()
        wake.unlock()
    }

    // MARK: - KV transfers (transport threads)

    public func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        let differences = identity.differences(from: request.identity)
        guard differences.isEmpty else {
            throw KVTransportError(.incompatible, "request \(request.requestID): " + differences.joined(separator: "; "))
        }
        guard let job = registry.withLock({ $0[request.requestID] }), !job.request.prefillHere else {
            throw KVTransportError(.refused, "no OpenDecode is waiting for request \(request.requestID) on this worker")
        }
        guard request.tokenCount == job.request.prompt.count else {
            throw KVTransportError(
                .refused,
                "request \(request.requestID) was opened with \(job.request.prompt.count) prompt tokens; the transfer has \(request.tokenCount)")
        }
        let expected = KVSequenceDescriptor(layout: cache.layout, tokenCount: request.tokenCount).layerByteCount
        guard request.layerByteCount == expected else {
            throw KVTransportError(
                .incompatible, "request \(request.requestID): \(request.layerByteCount) bytes per layer, expected \(expected)")
        }
        try job.transfer.withLock { state throws(KVTransportError) in
            guard case .awaiting(let targets) = state else {
                throw KVTransportError(.refused, "request \(request.requestID) is \(state.name), not waiting for its KV")
            }
            state = .receiving(targets, transport, started: .now)
        }
        return Inbound(job: job, scheduler: self, layerBlockBytes: cache.layout.layerBlockBytes)
    }

    /// One transfer landing in a reserved sequence. The blocks belong to that sequence until the scheduler frees
    /// it, which it does only after closing the transfer state under the same lock the copies hold.
    private final class Inbound: KVInboundTransfer, @unchecked Sendable {
        let job: Job
        let scheduler: DecodeScheduler
        let layerBlockBytes: Int
        private let received = Atomic<Int>(0)

        init(job: Job, scheduler: DecodeScheduler, layerBlockBytes: Int) {
            self.job = job
            self.scheduler = scheduler
            self.layerBlockBytes = layerBlockBytes
        }

        func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws {
            let blockBytes = layerBlockBytes
            try job.transfer.withLock { state throws(WorkerError) in
                guard case .receiving(let targets, _, _) = state else {
                    throw WorkerError(.transfer, "request \(job.request.requestID) is \(state.name)")
                }
                guard layer >= 0, layer < targets.count, bytes.count == targets[layer].count * blockBytes,
                    let source = bytes.baseAddress
                else {
                    throw WorkerError(.transfer, "layer \(layer) of request \(job.request.requestID) has the wrong size")
                }
                for target in targets[layer] {
                    target.pointer.copyMemory(from: source + target.byteOffset, byteCount: target.byteCount)
                }
            }
            received.add(bytes.count, ordering: .relaxed)
        }

        func complete(_ completion: KVTransferCompletion) async throws {
            let request = job.request
            guard completion.tokenCount == request.prompt.count else {
                throw KVTransportError(
                    .protocolViolation,
                    "completion of \(request.requestID) says \(completion.tokenCount) tokens, the transfer had \(request.prompt.count)")
            }
            let restored: (Sampler, SamplingParameters)
            do {
                restored = try SamplingHandoff.restore(
                    completion.samplingState, firstToken: completion.firstToken, vocabularySize: scheduler.vocabularySize)
            } catch {
                throw KVTransportError(.protocolViolation, "completion of \(request.requestID): \(error.message)", cause: error)
            }
            // The router sends one set of parameters to both workers; a mismatch would silently change sampling.
            var opened = job.parameters, shipped = restored.1
            if opened.seed == nil { shipped.seed = nil }
            opened.maxTokens = nil
            shipped.maxTokens = nil
            guard opened == shipped else {
                throw KVTransportError(
                    .protocolViolation,
                    "request \(request.requestID): the prefill worker sampled with other parameters than OpenDecode gave")
            }
            let bytes = received.load(ordering: .relaxed)
            try job.transfer.withLock { state throws(WorkerError) in
                guard case .receiving(_, let transport, let started) = state else {
                    throw WorkerError(.transfer, "request \(request.requestID) is \(state.name)")
                }
                state = .arrived(
                    Arrival(
                        firstToken: completion.firstToken, firstTokenLogprobs: completion.firstTokenLogprobs,
                        sampler: restored.0, transport: transport, bytes: bytes,
                        seconds: started.duration(to: .now).seconds))
            }
            scheduler.signal()
        }

        func fail(_ error: KVTransportError) async {
            let changed = job.transfer.withLock { state -> Bool in
                switch state {
                case .awaiting, .receiving:
                    state = .failed(error.description)
                    return true
                default:
                    return false
                }
            }
            if changed { scheduler.signal() }
        }
    }

    // MARK: - Scheduler (its own thread; owns the engines and the cache)

    private func run() {
        while true {
            let (opens, stopped) = inbox.withLock { inbox -> ([Job], Bool) in
                defer { inbox.opens.removeAll() }
                return (inbox.opens, inbox.stopped)
            }
            if stopped {
                for job in waiting + active + opens { fail(job, .internal, "the decode worker shut down") }
                waiting.removeAll()
                active.removeAll()
                publishCounters()
                return
            }
            for job in opens {
                counters.withLock { $0.queued -= 1 }
                admit(job)
            }
            sweepWaiting()
            active.removeAll { job in
                guard let reason = job.cancellation else { return false }
                fail(job, .cancelled, reason)
                return true
            }
            publishCounters()
            if active.isEmpty {
                wake.lock()
                let idle = inbox.withLock { $0.opens.isEmpty && !$0.stopped } && !waiting.contains { $0.needsAttention }
                if idle {
                    if let deadline = waiting.map(\.deadline).min() {
                        let seconds = max(ContinuousClock.now.duration(to: deadline).seconds, 0) + 0.001
                        _ = wake.wait(until: Date(timeIntervalSinceNow: seconds))
                    } else {
                        wake.wait()
                    }
                }
                wake.unlock()
                continue
            }
            step()
            active.removeAll { $0.done }
        }
    }

    /// Reserves room for `job`, then waits for its transfer or runs its prompt.
    private func admit(_ job: Job) {
        if let reason = job.cancellation { return fail(job, .cancelled, reason) }
        let request = job.request
        guard committedBlocks + job.budgetBlocks <= cache.blockCount else {
            let tokens = min(contextLength, request.prompt.count + (request.maxNewTokens ?? contextLength))
            return fail(
                job, .noRoom,
                "\(tokens) tokens need \(job.budgetBlocks) KV blocks; \(cache.blockCount - committedBlocks) of \(cache.blockCount) are uncommitted")
        }
        committedBlocks += job.budgetBlocks
        job.committed = true
        if request.prefillHere {
            runPrompt(job)
            return
        }
        do {
            let sequence = try cache.importSequence(KVSequenceDescriptor(layout: cache.layout, tokenCount: request.prompt.count))
            job.sequence = sequence
            var targets: [[KVImportSlice]] = []
            for layer in 0..<cache.layout.layers { targets.append(try cache.importTarget(sequence, layer: layer)) }
            let reserved = job.transfer.withLock { state -> Bool in
                guard case .pending = state else { return false }
                state = .awaiting(targets)
                return true
            }
            guard reserved else { return fail(job, .cancelled, job.cancellation ?? "cancelled") }
        } catch {
            return fail(job, .internal, "cannot reserve KV for request \(request.requestID): \(error.message)")
        }
        waiting.append(job)
        move(job, to: .waiting)
        job.updates.yield(.opened)
    }

    /// Runs a local prompt (prefill path or ingest) and samples its first token.
    private func runPrompt(_ job: Job) {
        let request = job.request
        publishCounters()
        job.updates.yield(.opened)
        let sequence = cache.createSequence()
        job.sequence = sequence
        var logits: [Float]
        do {
            if let prefill {
                logits = try prefill.prefill(request.prompt, sequence: sequence)
            } else {
                logits = try decode.ingest(request.prompt, sequence: sequence)
            }
        } catch {
            return fail(job, .internal, "running the prompt of \(request.requestID) failed: \(error.message)")
        }
        if let reason = job.cancellation { return fail(job, .cancelled, reason) }
        // As `Generator`: penalties see the prompt (the sampler keeps its own last-N window).
        var sampler = Sampler(parameters: job.parameters, vocabularySize: vocabularySize)
        sampler.accept(contentsOf: request.prompt)
        let first = sampler.sample(logits: &logits)
        job.sampler = sampler
        if accept(first, for: job) {
            active.append(job)
            move(job, to: .active)
        }
    }

    /// Moves arrived transfers to the active set; fails cancelled, broken and late ones.
    private func sweepWaiting() {
        guard !waiting.isEmpty else { return }
        let now = ContinuousClock.now
        waiting.removeAll { job in
            if let reason = job.cancellation {
                fail(job, .cancelled, reason)
                return true
            }
            let state = job.transfer.withLock { $0 }
            switch state {
            case .arrived(let arrival):
                job.sampler = arrival.sampler
                job.transport = arrival.transport
                job.kvBytes = arrival.bytes
                job.transferSeconds = arrival.seconds
                let first = SampledToken(
                    id: arrival.firstToken, logprob: arrival.firstTokenLogprobs?.logprob,
                    topLogprobs: arrival.firstTokenLogprobs?.top ?? [])
                if accept(first, for: job) {
                    active.append(job)
                    move(job, to: .active)
                }
                return true
            case .failed(let message):
                fail(job, .transferFailed, "the KV transfer of \(job.request.requestID) failed: \(message)")
                return true
            default:
                guard now >= job.deadline else { return false }
                let seconds = (job.request.transferTimeout ?? configuration.defaultTransferTimeout).seconds
                fail(job, .timeout, "the KV of \(job.request.requestID) did not arrive within \(seconds) s")
                return true
            }
        }
    }

    /// One decode step over every active job, `maxBatch` rows at a time.
    private func step() {
        var start = 0
        while start < active.count {
            let batch = active[start..<min(start + decode.maxBatch, active.count)]
            start += batch.count
            stepInputs.removeAll(keepingCapacity: true)
            for job in batch { stepInputs.append(DecodeInput(sequence: job.sequence!, token: job.lastToken)) }
            if batch.count > largestBatch {
                largestBatch = batch.count
                counters.withLock { $0.largestBatch = batch.count }
            }
            do {
                try decode.step(stepInputs)
            } catch {
                for job in batch {
                    fail(job, .internal, "decoding \(job.request.requestID) failed: \(error.message)")
                    job.done = true
                }
                continue
            }
            for (row, job) in batch.enumerated() {
                let sampled = decode.withLogits(row: row) { job.sampler!.sample(logits: $0) }
                if !accept(sampled, for: job) { job.done = true }
            }
        }
    }

    /// Emits `sampled` or ends the request; returns whether the job goes on.
    private func accept(_ sampled: SampledToken, for job: Job) -> Bool {
        let token = sampled.id
        job.generated += 1
        if job.generated == 1 {
            job.firstTokenAt = .now
            timeToFirstToken.record(job.opened.duration(to: .now).seconds)
        }
        if tokenizer.isEndOfGeneration(token) {
            finish(job, .endOfGeneration)
            return false
        }
        job.lastToken = token
        job.updates.yield(.token(sampled))
        if let maxNew = job.request.maxNewTokens, job.generated >= maxNew {
            finish(job, .maxTokens)
            return false
        }
        if job.request.prompt.count + job.generated >= contextLength {
            finish(job, .contextFull)
            return false
        }
        return true
    }

    private func finish(_ job: Job, _ reason: DecodeFinishReason) {
        if let first = job.firstTokenAt, job.generated > 1 {
            timePerOutputToken.record(first.duration(to: .now).seconds / Double(job.generated - 1))
        }
        release(job)
        counters.withLock { $0.finished += 1 }
        job.updates.yield(
            .finished(
                DecodeOutcome(
                    reason: reason, promptTokens: job.request.prompt.count, completionTokens: job.generated,
                    transport: job.transport, kvBytes: job.kvBytes, kvTransferSeconds: job.transferSeconds)))
        job.updates.finish()
    }

    private func fail(_ job: Job, _ kind: DecodeFailureKind, _ message: String) {
        release(job)
        counters.withLock { counters in
            if kind == .cancelled { counters.cancelled += 1 } else { counters.failed += 1 }
        }
        job.updates.yield(.failed(kind, message))
        job.updates.finish()
    }

    /// Closes the job's transfer (waiting for a layer copy in progress), frees its blocks and budget, forgets
    /// its id, and publishes the counters — all before the consumer can see the request end.
    private func release(_ job: Job) {
        move(job, to: .ended)
        job.transfer.withLock { $0 = .closed }
        if let sequence = job.sequence { cache.free(sequence) }
        job.sequence = nil
        if job.committed {
            committedBlocks -= job.budgetBlocks
            job.committed = false
        }
        registry.withLock { jobs in
            if jobs[job.request.requestID] === job { jobs[job.request.requestID] = nil }
        }
        publishCounters()
    }

    /// Moves `job` to `stage`, keeping the stage counts, and publishes them.
    private func move(_ job: Job, to stage: Job.Stage) {
        switch job.stage {
        case .waiting: waitingCount -= 1
        case .active: activeCount -= 1
        case .queued, .ended: break
        }
        job.stage = stage
        switch stage {
        case .waiting: waitingCount += 1
        case .active: activeCount += 1
        case .queued, .ended: break
        }
        publishCounters()
    }

    /// Makes the counters visible to other threads. Reads no job array: it runs while those are filtered.
    private func publishCounters() {
        let free = cache.freeBlockCount, total = cache.blockCount, uncommitted = cache.blockCount - committedBlocks
        let waitingCount = self.waitingCount, activeCount = self.activeCount
        counters.withLock { counters in
            counters.free = free
            counters.total = total
            counters.uncommitted = uncommitted
            counters.active = activeCount
            counters.waitingTransfers = waitingCount
        }
    }
}
