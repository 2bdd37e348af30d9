import Foundation
import Generation
import Synchronization
import Tokenization

/// The one token loop: every token Baton generates — `baton generate` and `chat`, `baton serve`, a decode worker,
/// the benchmarks — is sampled here.
///
/// One thread owns the `DecodeEngine` (and, unless this is a decode-only worker, a `PrefillEngine`) and the
/// `PagedKVCache`, and runs continuous batching over every active generation: generations join and leave
/// between steps, `maxBatch` rows per step.
///
/// A generation starts from a `GenerationState` — from its first token, or continuing after the tokens it holds —
/// and its prompt's KV comes from one of two places (`PromptSource`):
/// - **here**: the prompt runs on the prefill path (or through decode steps without a prefill engine);
/// - **a transfer**: the scheduler reserves the prompt's blocks at admission and a transport lands the prompt's
///   layers straight in them (`beginArrival`), then hands over the logits after the prompt's last token. The
///   longest prefix of the prompt this cache holds (from earlier transfers) is kept for it instead, and only the
///   positions after it arrive (`transferStart` says where the transfer must start).
/// Either way the generated tokens of a continued state then run through decode steps — as the undisturbed run
/// computed them — and sampling resumes from the state's random-generator state, so a continued generation
/// yields exactly the tokens the undisturbed one would have.
///
/// **Room.** A generation is admitted only when the blocks for prompt + `maxNewTokens` fit beside the budgets of
/// those already admitted, so no running generation ever runs out of KV and no transfer fails for space. Those
/// that do not fit yet wait in arrival order (`open` suspends meanwhile), up to `maxQueued`; the newest beyond that
/// are refused with `.overloaded`. One that could never fit is refused at once.
///
/// **Moving away.** After `parkMovable()` (a draining worker), each generation opened `movable` is paused at the
/// next step boundary, once: its stream ends with `Parked`, whose `KVDeparture` lends the sequence's KV (prompt +
/// every generated token but the last) to a transport and then either lets it go (`shipped`: the blocks are
/// freed) or continues it here (`resume`: a new stream, the same tokens as if it had never paused). The receiving
/// scheduler opens the state with `PromptSource.moved` and computes nothing again.
///
/// Each generation's events go to its own `AsyncThrowingStream`, yielded from the scheduler thread: the only hop
/// a token makes in this process. Cancelling (`GenerationStream.cancel`, `cancel(requestID:)`) frees the KV
/// before the next step — once a transfer landing in it has stopped writing.
public final class DecodeScheduler: GenerationBackend, @unchecked Sendable {
    /// Sizes, with the defaults a worker uses.
    public struct Configuration: Sendable {
        /// KV cache blocks shared by all generations.
        public var kvBlocks: Int
        /// Most generations in one decode step; more active ones take turns.
        public var maxBatch: Int = 8
        /// Compute threads of each engine.
        public var threads: Int = 1
        /// Tokens a generation may hold (prompt and completion); nil: the model's trained context.
        public var maxContext: Int?
        /// Run local prompts on the prefill (sgemm) path; false (a decode-only worker): through decode steps, except
        /// a continued generation whose prompt first ran on the prefill path (an engine is then built on first use).
        public var prefillEngine: Bool = true
        /// The prefill engine's f32 weights when another engine of this process holds them already; nil: its own.
        public var prefillWeights: PrefillWeights?
        /// Generations that may wait for room; beyond them `open` refuses with `.overloaded`.
        public var maxQueued: Int = 256
        /// Keep the full KV blocks of finished local prompts (and of what they generated) in the cache's prefix
        /// index, and start a local prompt from the longest cached prefix of it. A hit gives the bits a miss
        /// gives, on either path: decode steps are batch invariant and prefill is invariant to how a prompt is cut
        /// into passes, so any whole block is reused.
        public var prefixCaching = true

        public init(
            kvBlocks: Int, maxBatch: Int = 8, threads: Int = 1, maxContext: Int? = nil, prefillEngine: Bool = true
        ) {
            self.kvBlocks = kvBlocks
            self.maxBatch = maxBatch
            self.threads = threads
            self.maxContext = maxContext
            self.prefillEngine = prefillEngine
        }
    }

    /// Where a generation's prompt KV comes from.
    public enum PromptSource: Sendable, Equatable {
        /// Computed here.
        case computeHere
        /// Landed by a transport through `beginArrival`. The transfer must start within `timeout` of the admission
        /// (a prefill worker opens it when the prompt's first layer is computed, so this covers its queue), then
        /// make progress: every next layer, and the completion, within `progress` of the one before (of the start,
        /// for the first); nil: `timeout`. Else the generation fails with `.timeout` and its room is freed.
        case transfer(timeout: Duration, progress: Duration? = nil)
        /// Landed by a transport from the decode worker that ran the generation so far (`beginArrival`, no logits):
        /// the KV of prompt + every generated token but the last, as that worker computed it. The next step feeds
        /// the last generated token and sampling goes on from the state's generator state: nothing is computed
        /// again. The state holds at least one generated token. Bounds as for `transfer`.
        case moved(timeout: Duration, progress: Duration? = nil)

        /// The bounds of a KV landed by a transport; nil when computed here.
        var arrivalBounds: (timeout: Duration, progress: Duration?)? {
            switch self {
            case .computeHere: nil
            case .transfer(let timeout, let progress), .moved(let timeout, let progress): (timeout, progress)
            }
        }
    }

    /// How a parked generation's stream ends (see `parkMovable`): the departure to ship or resume it with.
    public struct Parked: Error, CustomStringConvertible {
        public let departure: KVDeparture
        public var description: String { "generation \(departure.requestID) paused to move to another worker" }
    }

    /// Counters for load reports; read from any thread.
    public struct Load: Sendable, Equatable {
        /// Generations waiting for room, or admitted and waiting for their KV transfer.
        public var waiting: Int
        /// Generations sampling tokens.
        public var active: Int
        /// Blocks not committed to any admitted generation (reservations count as used).
        public var uncommittedBlocks: Int
        /// Blocks not held by any sequence right now.
        public var freeBlocks: Int
        public var totalBlocks: Int
        /// The most rows one decode step has run since the start.
        public var largestBatch: Int
        /// Prompt tokens computed here or received since the start, and how many of them came from the prefix cache
        /// instead.
        public var promptTokens: Int
        public var cachedPromptTokens: Int
        /// KV bytes transfers landed here since the start, and the bytes of the prompt positions this cache held
        /// instead (what the transfers did not carry).
        public var kvBytesReceived: Int
        public var kvBytesNotShipped: Int
        /// Generations that ended since the start: finished normally, cancelled, or failed otherwise.
        public var finished: Int
        public var cancelled: Int
        public var failed: Int
        /// Generations that moved to another worker with their KV, and that arrived here so.
        public var movedAway: Int
        public var movedHere: Int
    }

    public let tokenizer: Tokenizer
    /// Tokens a generation may hold.
    public let contextLength: Int
    public let configuration: Configuration
    public let vocabularySize: Int
    /// The cache's layout (what a KV transfer must match).
    public var layout: KVCacheLayout { cache.layout }
    /// Time from `open` to the first token, recent generations (seconds).
    public let timeToFirstToken = LatencyWindow()
    /// Mean time between tokens of recent finished generations (seconds).
    public let timePerOutputToken = LatencyWindow()

    private let decode: DecodeEngine
    /// Built at start when `configuration.prefillEngine`, else on the scheduler thread the first time a prompt
    /// must run on the prefill path (a continued generation whose prompt first ran there). Scheduler thread only.
    private var prefill: PrefillEngine?
    private let model: TransformerModel
    private let cache: PagedKVCache
    /// Every live generation by request id: for duplicates, arrivals and cancellation. Removed when it ends.
    private let registry = Mutex<[String: Job]>([:])
    private let inbox = Mutex(Inbox())
    /// Signalled when work arrives, a transfer progresses, a generation is cancelled, or on shutdown.
    private let wake = NSCondition()
    fileprivate let counters = Mutex(Counters())

    // Scheduler thread only.
    private var queued: [Job] = []
    private var waiting: [Job] = []
    private var active: [Job] = []
    /// Paused for a move (`parkMovable`): their blocks stay until they moved or resume.
    private var parked: [Job] = []
    private var committedBlocks = 0
    /// Jobs per stage, kept apart from the arrays so the counters can be published while those are filtered.
    private var waitingCount = 0
    private var activeCount = 0
    private var stepInputs: [DecodeInput] = []
    private var largestBatch = 0

    fileprivate struct Counters {
        var queued = 0
        var waitingTransfers = 0
        var active = 0
        var free = 0
        var total = 0
        var uncommitted = 0
        var largestBatch = 0
        var promptTokens = 0
        var cachedPromptTokens = 0
        var kvBytesReceived = 0
        var kvBytesNotShipped = 0
        var finished = 0
        var cancelled = 0
        var failed = 0
        var movedAway = 0
        var movedHere = 0
    }

    private struct Inbox {
        var opens: [Job] = []
        var running = false
        var stopped = false
        var parking = false
    }

    public init(model: TransformerModel, tokenizer: Tokenizer, configuration: Configuration) throws(InferenceError) {
        guard configuration.kvBlocks >= 1 else {
            throw InferenceError(.invalidArgument, "the KV cache needs at least one block, got \(configuration.kvBlocks)")
        }
        guard configuration.maxQueued >= 0 else {
            throw InferenceError(.invalidArgument, "maxQueued must be 0 or more, got \(configuration.maxQueued)")
        }
        cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: configuration.kvBlocks)
        decode = try DecodeEngine(
            model: model, cache: cache, threads: configuration.threads, maxBatch: configuration.maxBatch,
            maxContext: configuration.maxContext)
        prefill = configuration.prefillEngine
            ? try PrefillEngine(
                model: model, cache: cache, threads: configuration.threads, maxContext: configuration.maxContext,
                weights: configuration.prefillWeights)
            : nil
        self.model = model
        self.tokenizer = tokenizer
        self.configuration = configuration
        contextLength = min(decode.maxContext, prefill?.maxContext ?? Int.max)
        vocabularySize = model.configuration.vocabularySize
        publishCounters()
    }

    /// Whether local prompts take the prefill (sgemm) path unless their state says otherwise.
    public var hasPrefillEngine: Bool { configuration.prefillEngine }

    /// The path a generation's prompt KV takes here: a transfer is always the prefill path; a prompt computed
    /// here takes the path its state names (a continuation rebuilds it as its first run did), else the prefill
    /// path when this scheduler has a prefill engine and decode steps when not.
    public func promptPath(for state: GenerationState, source: PromptSource) -> PromptPath {
        if case .transfer = source { return .prefill }
        return state.promptPath ?? (configuration.prefillEngine ? .prefill : .decode)
    }

    public var load: Load {
        counters.withLock { c in
            Load(
                waiting: c.queued + c.waitingTransfers, active: c.active, uncommittedBlocks: c.uncommitted,
                freeBlocks: c.free, totalBlocks: c.total, largestBatch: c.largestBatch, promptTokens: c.promptTokens,
                cachedPromptTokens: c.cachedPromptTokens, kvBytesReceived: c.kvBytesReceived,
                kvBytesNotShipped: c.kvBytesNotShipped, finished: c.finished,
                cancelled: c.cancelled, failed: c.failed, movedAway: c.movedAway, movedHere: c.movedHere)
        }
    }

    /// Starts the scheduler thread (idempotent).
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

    /// From now on pauses every generation opened `movable` at its next step boundary (once each, so one resumed
    /// here runs to its end): its stream ends with `Parked`. A draining worker calls it to move its work away.
    public func parkMovable() {
        inbox.withLock { $0.parking = true }
        signal()
    }

    /// Stops the scheduler; generations left fail with `.unavailable`.
    public func shutdown() {
        inbox.withLock { $0.stopped = true }
        signal()
    }

    // MARK: - Opening generations

    public func generate(_ state: GenerationState) async throws(GenerationError) -> GenerationStream {
        try await open(state, prompt: .computeHere)
    }

    public func health() async -> BackendHealth {
        let (running, stopped) = inbox.withLock { ($0.running, $0.stopped) }
        if stopped { return .unavailable(reason: "the decode scheduler is shutting down") }
        if !running { return .unavailable(reason: "the decode scheduler has not started") }
        return .ready
    }

    /// Admits the generation `state` describes and returns its events once it holds room (for a transfer: once
    /// its blocks are reserved and `beginArrival` accepts its KV). Suspends while it waits for room.
    ///
    /// `state` must be valid for this scheduler (`GenerationState.validated(vocabularySize:contextLength:)`, done
    /// at the edge). Throws `.invalidArgument` for a request id already live here, `.contextLengthExceeded` for
    /// one that can never fit the cache, `.overloaded` when it cannot fit now and `maxQueued` generations wait already,
    /// `.unavailable` when the scheduler is not running, `.cancelled` when the calling task is cancelled first.
    /// A `movable` generation may end its stream with `Parked` once `parkMovable()` was called.
    public func open(
        _ state: GenerationState, prompt source: PromptSource, movable: Bool = false
    ) async throws(GenerationError) -> GenerationStream {
        let request = state.request
        if case .moved = source, state.generated.isEmpty {
            throw GenerationError(
                .invalidArgument, "request \(request.id) moves with its KV but has no generated token to continue from",
                param: "generated")
        }
        precondition(
            !request.prompt.isEmpty && request.prompt.count + request.maxNewTokens <= contextLength
                && state.generated.count < request.maxNewTokens,
            "DecodeScheduler.open needs a state validated for this scheduler's context of \(contextLength)")
        let budget = cache.layout.blocks(forTokens: request.prompt.count + request.maxNewTokens)
        guard budget <= cache.blockCount else {
            throw GenerationError(
                .contextLengthExceeded,
                "\(request.prompt.count) prompt tokens + max_tokens \(request.maxNewTokens) need \(budget) KV blocks; this cache has \(cache.blockCount)",
                param: "max_tokens")
        }
        let (events, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let job = Job(state: state, source: source, events: continuation, budgetBlocks: budget, movable: movable)
        let fresh = registry.withLock { jobs -> Bool in
            guard jobs[request.id] == nil else { return false }
            jobs[request.id] = job
            return true
        }
        guard fresh else {
            throw GenerationError(.invalidArgument, "request \(request.id) is already open here", param: "id")
        }
        let admission: Result<Void, GenerationError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Result<Void, GenerationError>, Never>) in
                job.admissionWaiter = waiter
                let refusal: GenerationError? = inbox.withLock { inbox in
                    guard inbox.running && !inbox.stopped else {
                        return GenerationError(.unavailable, "the decode scheduler is not running")
                    }
                    inbox.opens.append(job)
                    return nil
                }
                if let refusal {
                    job.admissionWaiter = nil
                    waiter.resume(returning: .failure(refusal))
                } else {
                    signal()
                }
            }
        } onCancel: {
            job.cancel(reason: "the caller went away before the generation was admitted")
            signal()
        }
        if case .failure(let error) = admission {
            registry.withLock { jobs in
                if jobs[request.id] === job { jobs[request.id] = nil }
            }
            throw error
        }
        let requestID = request.id
        return GenerationStream(events) { [weak self] reason in self?.cancel(requestID: requestID, reason: reason) }
    }

    /// Cancels a live generation: its KV is freed before the next step (once a transfer landing in it has stopped
    /// writing), and its stream ends with `.cancelled`. Returns whether it was live.
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

    // MARK: - KV arrivals (transport threads)

    /// Where a transfer into `requestID`'s blocks must start: the prompt positions before it came from this cache's
    /// prefix index when the generation was admitted, and stay held for it (never evicted meanwhile); 0 when the
    /// whole prompt must arrive. Nil when no admitted generation here waits for its KV.
    public func transferStart(requestID: String) -> Int? {
        guard let job = registry.withLock({ $0[requestID] }), job.source != .computeHere else { return nil }
        guard case .awaiting = job.transfer.withLock({ $0 }) else { return nil }
        return job.cachedPromptTokens.load(ordering: .acquiring)
    }

    /// The KV of `requestID`'s prompt (`tokenCount` tokens; for a moved generation, prompt + generated tokens but the
    /// last) from position `firstToken` on starts arriving over
    /// `transport` (its name as logs and metrics show it). Throws `.invalidArgument` when no admitted generation
    /// here waits for it, it has another prompt length, or it does not start where this cache's prefix ends
    /// (`transferStart`): a sender that skips positions this worker lacks, or resends ones it holds, is refused
    /// before a byte lands.
    public func beginArrival(
        requestID: String, tokenCount: Int, firstToken: Int = 0, transport: String
    ) throws(InferenceError) -> KVArrival {
        guard let job = registry.withLock({ $0[requestID] }), job.source != .computeHere else {
            throw InferenceError(.invalidArgument, "no generation here waits for the KV of request \(requestID)")
        }
        guard tokenCount == job.kvTokenCount else {
            let opened = job.kvTokenCount == job.promptCount
                ? "\(job.promptCount) prompt tokens" : "the KV of \(job.kvTokenCount) tokens (prompt and generated)"
            throw InferenceError(.invalidArgument, "request \(requestID) was opened with \(opened); its KV has \(tokenCount)")
        }
        let held = job.cachedPromptTokens.load(ordering: .acquiring)
        guard firstToken == held else {
            throw InferenceError(
                .invalidArgument,
                "request \(requestID): this worker holds the KV of the prompt's first \(held) positions, so its transfer must start at position \(held); this one starts at \(firstToken)")
        }
        try job.transfer.withLock { state throws(InferenceError) in
            guard case .awaiting(let targets) = state else {
                throw InferenceError(.invalidArgument, "request \(requestID) is \(state.name), not waiting for its KV")
            }
            state = .receiving(targets, transport: transport, started: .now, progressAt: .now)
        }
        // Its deadline is now the progress bound's, which may come sooner than the start bound it sleeps on.
        signal()
        return KVArrival(job: job, scheduler: self)
    }

    /// One prompt's KV landing in the blocks its generation reserved. Used by one transport task. The blocks stay
    /// reserved until the transport calls `complete` or `fail`, even if the generation is cancelled meanwhile
    /// (the scheduler frees them only after that), so writing into `landingRegions` is always safe in between.
    public final class KVArrival: @unchecked Sendable {
        fileprivate let job: Job
        private let scheduler: DecodeScheduler
        private let landed = Mutex<Set<Int>>([])
        private let bytes = Atomic<Int>(0)

        fileprivate init(job: Job, scheduler: DecodeScheduler) {
            self.job = job
            self.scheduler = scheduler
        }

        public var requestID: String { job.id }

        /// The memory `layer`'s bytes go to: the reserved blocks, in export order (their sizes add up to the
        /// layer's byte count). Nil when the arrival was cancelled or the layer is out of range.
        public func landingRegions(layer: Int) -> [UnsafeMutableRawBufferPointer]? {
            job.transfer.withLock { state in
                guard case .receiving(let targets, _, _, _) = state, job.cancellation == nil, layer >= 0,
                    layer < targets.count
                else { return nil }
                return targets[layer].map { UnsafeMutableRawBufferPointer(start: $0.pointer, count: $0.byteCount) }
            }
        }

        /// Every byte of `layer` is in its regions and matched its checksum. Throws when the generation was cancelled
        /// or timed out meanwhile (the transport then stops and calls `fail`).
        public func layerLanded(_ layer: Int) throws(InferenceError) {
            let count = try job.transfer.withLock { state throws(InferenceError) -> Int in
                guard case .receiving(let targets, let transport, let started, _) = state, layer >= 0, layer < targets.count
                else {
                    throw InferenceError(.invalidArgument, "layer \(layer) of request \(job.id) is unexpected (\(state.name))")
                }
                // Progress: the next layer's bound counts from here.
                state = .receiving(targets, transport: transport, started: started, progressAt: .now)
                return targets[layer].reduce(0) { $0 + $1.byteCount }
            }
            if let reason = job.cancellation { throw InferenceError(.invalidArgument, "request \(job.id) was cancelled: \(reason)") }
            landed.withLock { _ = $0.insert(layer) }
            bytes.add(count, ordering: .relaxed)
        }

        /// `layer`'s verified bytes from a buffer (transports that cannot land in place): copies them into the
        /// blocks. Same conditions as `layerLanded`.
        public func receiveLayer(_ layer: Int, bytes source: UnsafeRawBufferPointer) throws(InferenceError) {
            try job.transfer.withLock { state throws(InferenceError) in
                guard case .receiving(let targets, _, _, _) = state, layer >= 0, layer < targets.count else {
                    throw InferenceError(.invalidArgument, "layer \(layer) of request \(job.id) is unexpected (\(state.name))")
                }
                let expected = targets[layer].reduce(0) { $0 + $1.byteCount }
                guard source.count == expected, let base = source.baseAddress else {
                    throw InferenceError(
                        .invalidArgument, "layer \(layer) of request \(job.id) has \(source.count) bytes, expected \(expected)")
                }
                for target in targets[layer] { target.pointer.copyMemory(from: base + target.byteOffset, byteCount: target.byteCount) }
            }
            try layerLanded(layer)
        }

        /// Every layer arrived; `logits` are the prompt's last position's (`vocabularySize` floats), from which the
        /// first token is sampled; none for a moved generation (its next token comes from a step). Throws when a
        /// layer is missing or the logits have the wrong size.
        public func complete(logits: [Float]) throws(InferenceError) {
            let layers = scheduler.cache.layout.layers
            let missing = landed.withLock { landed in (0..<layers).filter { !landed.contains($0) } }
            guard missing.isEmpty else {
                throw InferenceError(.invalidArgument, "request \(job.id): layers \(missing) never arrived")
            }
            let expected = job.source.isMoved ? 0 : scheduler.vocabularySize
            guard logits.count == expected else {
                throw InferenceError(
                    .invalidArgument,
                    job.source.isMoved
                        ? "request \(job.id) moved here: its KV comes without logits, got \(logits.count)"
                        : "request \(job.id): \(logits.count) logits, the vocabulary has \(scheduler.vocabularySize)")
            }
            let total = bytes.load(ordering: .relaxed)
            let held = job.cachedPromptTokens.load(ordering: .acquiring)
            let layout = scheduler.cache.layout
            let notShipped = held / layout.blockSize * layout.layerBlockBytes * layout.layers
            try job.transfer.withLock { state throws(InferenceError) in
                guard case .receiving(_, let transport, let started, _) = state else {
                    throw InferenceError(.invalidArgument, "request \(job.id) is \(state.name)")
                }
                state = .arrived(
                    logits: logits,
                    handoff: KVHandoffSummary(
                        transport: transport, bytes: total, seconds: (started.duration(to: .now) / .seconds(1)),
                        cachedTokens: held, bytesNotShipped: notShipped))
            }
            scheduler.counters.withLock { counters in
                counters.kvBytesReceived += total
                counters.kvBytesNotShipped += notShipped
            }
            scheduler.signal()
        }

        /// The transport gave up (and writes nothing more): the generation fails unless it already arrived.
        public func fail(_ message: String) {
            let changed = job.transfer.withLock { state -> Bool in
                switch state {
                case .awaiting, .receiving:
                    state = .failed(message)
                    return true
                default:
                    return false
                }
            }
            if changed { scheduler.signal() }
        }
    }

    /// A parked generation on its way to another worker: what a transport needs to ship its KV, and the two ways
    /// out. Call order: `beginShipping`, then `shipped` (it is gone from here) or `shippingFailed` (parked again);
    /// or `resume` instead, to continue it here. `cancel` ends it (once no transport reads it). Thread-safe.
    public final class KVDeparture: @unchecked Sendable {
        fileprivate let job: Job
        private let scheduler: DecodeScheduler
        /// The generation as it paused: the tokens generated here and the generator state after the last.
        public let state: GenerationState
        /// Positions whose KV it holds: prompt + generated tokens but the last (the next step feeds that one).
        public let tokenCount: Int
        private let regions: [[UnsafeRawBufferPointer]]

        fileprivate init(
            job: Job, scheduler: DecodeScheduler, state: GenerationState, tokenCount: Int, regions: [[UnsafeRawBufferPointer]]
        ) {
            self.job = job
            self.scheduler = scheduler
            self.state = state
            self.tokenCount = tokenCount
            self.regions = regions
        }

        public var requestID: String { job.id }

        /// Lends the KV to a transport: per layer, its blocks' memory in order (`KVSequenceDescriptor.layerByteCount`
        /// bytes in all). It holds still until `shipped` or `shippingFailed`. Throws when the generation is no longer
        /// parked (cancelled, resumed, or already shipping or moved).
        public func beginShipping() throws(InferenceError) -> [[UnsafeRawBufferPointer]] {
            try job.departure.withLock { state throws(InferenceError) in
                guard case .parked = state, job.cancellation == nil else {
                    throw InferenceError(.invalidArgument, "request \(job.id) is not parked here (\(job.cancellation ?? "resumed or moved"))")
                }
                state = .shipping
            }
            return regions
        }

        /// The receiver confirmed the whole KV: the generation is gone from here (its blocks are freed).
        public func shipped() {
            job.departure.withLock { state in
                if case .shipping = state { state = .moved }
            }
            scheduler.signal()
        }

        /// The transfer failed: the generation is parked again (to resume here, or be cancelled).
        public func shippingFailed() {
            job.departure.withLock { state in
                if case .shipping = state { state = .parked }
            }
            scheduler.signal()
        }

        /// Continues the generation here from where it paused; its tokens follow on the returned stream. Throws when
        /// it is not parked (shipping, moved or cancelled).
        public func resume() throws(InferenceError) -> GenerationStream {
            let (events, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
            try job.departure.withLock { state throws(InferenceError) in
                guard case .parked = state, job.cancellation == nil else {
                    throw InferenceError(.invalidArgument, "request \(job.id) cannot resume here (\(job.cancellation ?? "it moved or ships"))")
                }
                state = .resuming(continuation)
            }
            scheduler.signal()
            let requestID = job.id
            return GenerationStream(events) { [weak scheduler] reason in scheduler?.cancel(requestID: requestID, reason: reason) }
        }

        /// Ends the generation here (its blocks are freed once no transport reads them).
        public func cancel(reason: String) {
            scheduler.cancel(requestID: job.id, reason: reason)
        }
    }

    // MARK: - The scheduler thread (owns the engines and the cache)

    private func run() {
        while true {
            let (opens, stopped) = inbox.withLock { inbox -> ([Job], Bool) in
                defer { inbox.opens.removeAll() }
                return (inbox.opens, inbox.stopped)
            }
            queued += opens
            if stopped {
                let error = GenerationError(.unavailable, "the decode scheduler shut down")
                for job in queued { resolveAdmission(job, .failure(error)) }
                for job in waiting + active + queued + parked { end(job, failing: error) }
                queued.removeAll()
                waiting.removeAll()
                active.removeAll()
                parked.removeAll()
                publishCounters()
                return
            }
            admitQueued()
            sweepWaiting()
            sweepParked()
            if inbox.withLock({ $0.parking }) { parkOffered() }
            active.removeAll { job in
                guard let reason = job.cancellation else { return false }
                end(job, failing: GenerationError(.cancelled, reason))
                return true
            }
            publishCounters()
            if active.isEmpty {
                sleepUntilWork()
                continue
            }
            step()
            active.removeAll { $0.done }
        }
    }

    private func sleepUntilWork() {
        wake.lock()
        defer { wake.unlock() }
        let idle = inbox.withLock { $0.opens.isEmpty && !$0.stopped }
            && !waiting.contains { $0.needsAttention } && !queued.contains { $0.cancellation != nil }
            && !parked.contains { $0.departureNeedsAttention }
        guard idle else { return }
        // A late transfer still writing has been told to stop (its `fail` will signal): no deadline to wait for.
        if let deadline = waiting.filter({ !$0.timedOut }).compactMap(\.transferDeadline).min() {
            let seconds = max(ContinuousClock.now.duration(to: deadline) / .seconds(1), 0) + 0.001
            _ = wake.wait(until: Date(timeIntervalSinceNow: seconds))
        } else {
            wake.wait()
        }
    }

    /// Admits queued generations in arrival order while their budgets fit, drops cancelled ones, and refuses the
    /// newest of those left beyond `maxQueued` (`.overloaded`).
    private func admitQueued() {
        queued.removeAll { job in
            guard let reason = job.cancellation else { return false }
            let error = GenerationError(.cancelled, reason)
            resolveAdmission(job, .failure(error))
            end(job, failing: error)
            return true
        }
        while let job = queued.first, committedBlocks + job.budgetBlocks <= cache.blockCount {
            queued.removeFirst()
            admit(job)
        }
        while queued.count > configuration.maxQueued, let job = queued.popLast() {
            let error = GenerationError(
                .overloaded, "\(configuration.maxQueued) generations wait for room already", retryAfterSeconds: 1)
            resolveAdmission(job, .failure(error))
            end(job, failing: error)
        }
        let waitingForRoom = queued.count
        counters.withLock { $0.queued = waitingForRoom }
    }

    /// Commits `job`'s room, then runs its prompt or reserves the blocks its transfer lands in.
    private func admit(_ job: Job) {
        committedBlocks += job.budgetBlocks
        job.committed = true
        publishCounters()
        switch job.source {
        case .computeHere:
            resolveAdmission(job, .success(()))
            runPrompt(job)
        case .transfer, .moved:
            do {
                // The longest prefix this cache holds is kept for the request (referenced, so never evicted while
                // the transfer runs); the transfer lands only the positions after it, in fresh blocks. A moved
                // generation's KV (prompt and generated tokens, computed elsewhere) arrives whole: it is not a new
                // prompt, so it neither adopts nor counts as one.
                let sequence = cache.createSequence()
                job.sequence = sequence
                let prompt = job.state.request.prompt
                let moved = job.source.isMoved
                let held = try moved ? 0 : adoptCachedPrefix(of: prompt, path: .prefill, into: sequence)
                try cache.append(sequence, count: job.kvTokenCount - held)
                let targets = try (0..<cache.layout.layers).map { layer throws(InferenceError) in
                    try cache.importTarget(sequence, layer: layer, from: held)
                }
                job.cachedPromptTokens.store(held, ordering: .releasing)
                if !moved {
                    counters.withLock { counters in
                        counters.promptTokens += prompt.count
                        counters.cachedPromptTokens += held
                    }
                }
                job.transfer.withLock { $0 = .awaiting(targets) }
            } catch {
                let failure = GenerationError(
                    .failed, "cannot reserve KV for request \(job.id): \(error.message)", cause: error)
                resolveAdmission(job, .failure(failure))
                return end(job, failing: failure)
            }
            job.admittedAt = .now
            waiting.append(job)
            move(job, to: .waiting)
            resolveAdmission(job, .success(()))
        }
    }

    private func resolveAdmission(_ job: Job, _ result: Result<Void, GenerationError>) {
        let waiter = job.admissionWaiter
        job.admissionWaiter = nil
        waiter?.resume(returning: result)
    }

    /// Runs a local prompt (and the generated tokens of a continued state), then samples.
    private func runPrompt(_ job: Job) {
        let sequence = cache.createSequence()
        job.sequence = sequence
        let prompt = job.state.request.prompt
        let path = promptPath(for: job.state, source: job.source)
        var logits: [Float]
        do throws(InferenceError) {
            let cached = try adoptCachedPrefix(of: prompt, path: path, into: sequence)
            counters.withLock { counters in
                counters.promptTokens += prompt.count
                counters.cachedPromptTokens += cached
            }
            switch path {
            case .prefill:
                logits = try prefillEngine().prefill(Array(prompt[cached...]), sequence: sequence)
            case .decode:
                logits = try decode.ingest(Array(prompt[cached...]), sequence: sequence)
            }
            job.cachesPrefix = configuration.prefixCaching
        } catch {
            return end(job, failing: GenerationError(.failed, "running the prompt of \(job.id) failed: \(error.message)", cause: error))
        }
        startSampling(job, promptLogits: &logits)
    }

    /// Gives `sequence` the longest cached prefix of `prompt` computed on `path` (at least one token is left to
    /// compute, for the logits) and returns its length; 0 without prefix caching.
    private func adoptCachedPrefix(of prompt: [Int32], path: PromptPath, into sequence: SequenceID) throws(InferenceError) -> Int {
        guard configuration.prefixCaching else { return 0 }
        let space = path.prefixNamespace
        return try cache.adoptPrefix(sequence, tokens: prompt, namespace: { _ in space }, limit: prompt.count - 1)
    }

    /// Enters the generation's computed full blocks in the prefix index (once its prompt ran, and again when it
    /// ends, with what it generated): prompt blocks under the path that computed them, blocks holding generated
    /// tokens under the decode path (or, straddling a prefill-path prompt's end, under a namespace nothing adopts).
    private func cachePrefix(of job: Job, sequence: SequenceID) {
        guard job.cachesPrefix, let held = try? cache.tokenCount(sequence) else { return }
        let tokens = Array((job.state.request.prompt + job.state.generated).prefix(held))
        let promptCount = job.promptCount, size = cache.layout.blockSize
        let path = promptPath(for: job.state, source: job.source)
        let promptSpace = path.prefixNamespace, decodeSpace = PromptPath.decode.prefixNamespace
        try? cache.registerPrefix(sequence, tokens: tokens) { block in
            if (block + 1) * size <= promptCount { return promptSpace }
            return path == .decode ? decodeSpace : PromptPath.mixedPrefixNamespace
        }
    }

    /// The prefill engine, built on first use by a scheduler started without one (its f32 weights then stay).
    private func prefillEngine() throws(InferenceError) -> PrefillEngine {
        if let prefill { return prefill }
        let engine = try PrefillEngine(
            model: model, cache: cache, threads: configuration.threads, maxContext: configuration.maxContext,
            weights: configuration.prefillWeights)
        guard engine.maxContext >= contextLength else {
            throw InferenceError(
                .invalidArgument, "the prefill engine holds \(engine.maxContext) tokens, fewer than this scheduler's \(contextLength)")
        }
        prefill = engine
        return engine
    }

    /// From the prompt's logits: runs a continued state's generated tokens through decode steps (their logits
    /// replace the prompt's), rebuilds the sampler and samples the next token.
    private func startSampling(_ job: Job, promptLogits logits: inout [Float]) {
        if let reason = job.cancellation { return end(job, failing: GenerationError(.cancelled, reason)) }
        let generated = job.state.generated
        if !generated.isEmpty {
            do { logits = try decode.ingest(generated, sequence: job.sequence!) } catch {
                return end(job, failing: GenerationError(.failed, "replaying the tokens of \(job.id) failed: \(error.message)", cause: error))
            }
        }
        // Entered now, not when it ends: prompts queued behind it that share the prefix reuse it at once.
        if let sequence = job.sequence { cachePrefix(of: job, sequence: sequence) }
        var sampler = Sampler(continuing: job.state, vocabularySize: vocabularySize)
        let next = sampler.sample(logits: &logits)
        job.sampler = sampler
        if accept(next, for: job) {
            active.append(job)
            move(job, to: .active)
        }
    }

    /// A moved generation's KV arrived (prompt + generated tokens but the last): its next step feeds the last
    /// generated token and samples with the generator state it brought, exactly as where it ran before.
    private func continueMoved(_ job: Job) {
        if let reason = job.cancellation { return end(job, failing: GenerationError(.cancelled, reason)) }
        job.sampler = Sampler(continuing: job.state, vocabularySize: vocabularySize)
        job.lastToken = job.state.generated.last!
        // Its first token was timed where it started; the time per token counts from here.
        job.firstTokenAt = .now
        counters.withLock { $0.movedHere += 1 }
        active.append(job)
        move(job, to: .active)
    }

    /// Pauses every movable generation not offered yet: it leaves the batch, keeps its blocks, and its stream ends
    /// with `Parked`, the departure lending its KV.
    private func parkOffered() {
        active.removeAll { job in
            guard job.movable, !job.offered, job.cancellation == nil, let sequence = job.sequence else { return false }
            job.offered = true
            let departure: KVDeparture
            do throws(InferenceError) {
                let tokenCount = try cache.tokenCount(sequence)
                let blocks = cache.layout.blocks(forTokens: tokenCount)
                let regions = try (0..<cache.layout.layers).map { layer throws(InferenceError) in
                    Array(try cache.exportRegions(sequence, layer: layer).prefix(blocks))
                }
                departure = KVDeparture(job: job, scheduler: self, state: job.state, tokenCount: tokenCount, regions: regions)
            } catch {
                return false  // not exportable (cannot happen for a live sequence): it runs on here
            }
            job.departure.withLock { $0 = .parked }
            parked.append(job)
            move(job, to: .parked)
            job.events.finish(throwing: Parked(departure: departure))
            return true
        }
    }

    /// Frees parked generations that moved or were cancelled (unless a transport still reads them) and puts those
    /// resumed back in the batch with their new stream.
    private func sweepParked() {
        guard !parked.isEmpty else { return }
        parked.removeAll { job in
            switch job.departure.withLock({ $0 }) {
            case .moved:
                counters.withLock { $0.movedAway += 1 }
                release(job)
                return true
            case .resuming(let events):
                job.departure.withLock { $0 = .none }
                job.events = events
                if let reason = job.cancellation {
                    end(job, failing: GenerationError(.cancelled, reason))
                } else {
                    active.append(job)
                    move(job, to: .active)
                }
                return true
            case .parked:
                guard let reason = job.cancellation else { return false }
                job.departure.withLock { $0 = .none }
                end(job, failing: GenerationError(.cancelled, reason))
                return true
            case .shipping, .none:
                return false
            }
        }
    }

    /// Starts generations whose KV arrived; fails cancelled, broken and late ones (a cancelled or late one whose
    /// transfer still writes waits until it stops).
    private func sweepWaiting() {
        guard !waiting.isEmpty else { return }
        let now = ContinuousClock.now
        waiting.removeAll { job in
            let state = job.transfer.withLock { $0 }
            switch state {
            case .arrived(var logits, let handoff):
                job.handoff = handoff
                // Its prompt's KV is the prefill path's, whole (held blocks and arrived ones): later prompts reuse it.
                job.cachesPrefix = configuration.prefixCaching
                if let reason = job.cancellation {
                    end(job, failing: GenerationError(job.timedOut ? .timeout : .cancelled, reason))
                    return true
                }
                if job.source.isMoved { continueMoved(job) } else { startSampling(job, promptLogits: &logits) }
                return true
            case .failed(let message):
                if let reason = job.cancellation {
                    end(job, failing: GenerationError(job.timedOut ? .timeout : .cancelled, reason))
                } else {
                    end(job, failing: GenerationError(.kvTransferFailed, "the KV transfer of \(job.id) failed: \(message)"))
                }
                return true
            case .receiving:
                // The transport writes into the blocks until it calls `fail` (which `layerLanded` provokes once the
                // job is cancelled or late): wait for that.
                if let deadline = job.transferDeadline, now >= deadline, !job.timedOut {
                    job.timedOut = true
                    job.cancel(reason: "the KV of \(job.id) made no progress for \(job.progressSeconds) s")
                }
                return false
            default:
                if let reason = job.cancellation {
                    job.transfer.withLock { $0 = .closed }
                    end(job, failing: GenerationError(job.timedOut ? .timeout : .cancelled, reason))
                    return true
                }
                if let deadline = job.transferDeadline, now >= deadline {
                    job.transfer.withLock { $0 = .closed }
                    end(
                        job,
                        failing: GenerationError(
                            .timeout, "the KV transfer of \(job.id) did not start within \(job.timeoutSeconds) s"))
                    return true
                }
                return false
            }
        }
    }

    /// One decode step over every active generation, `maxBatch` rows at a time.
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
                    end(job, failing: GenerationError(.failed, "decoding \(job.id) failed: \(error.message)", cause: error))
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

    /// Emits `token` or ends the generation; returns whether it goes on.
    private func accept(_ token: GeneratedToken, for job: Job) -> Bool {
        job.sampledHere += 1
        if job.firstTokenAt == nil {
            job.firstTokenAt = .now
            timeToFirstToken.record((job.opened.duration(to: .now) / .seconds(1)))
        }
        if tokenizer.isEndOfGeneration(token.id) {
            finish(job, .endOfGeneration, extraToken: true)
            return false
        }
        if job.state.request.stopTokenIDs.contains(token.id) {
            finish(job, .stopToken, extraToken: true)
            return false
        }
        job.state.append(token)
        job.lastToken = token.id
        job.events.yield(.token(token))
        if job.state.remainingTokens <= 0 {
            finish(job, .maxTokens, extraToken: false)
            return false
        }
        if job.promptCount + job.state.generated.count >= contextLength {
            finish(job, .contextFull, extraToken: false)
            return false
        }
        return true
    }

    private func finish(_ job: Job, _ reason: FinishReason, extraToken: Bool) {
        if let first = job.firstTokenAt, job.sampledHere > 1 {
            timePerOutputToken.record((first.duration(to: .now) / .seconds(1)) / Double(job.sampledHere - 1))
        }
        counters.withLock { $0.finished += 1 }
        release(job)
        job.events.yield(
            .finished(
                GenerationSummary(
                    reason: reason, promptTokens: job.promptCount,
                    completionTokens: job.state.generated.count + (extraToken ? 1 : 0), handoff: job.handoff)))
        job.events.finish()
    }

    private func end(_ job: Job, failing error: GenerationError) {
        counters.withLock { counters in
            if error.code == .cancelled { counters.cancelled += 1 } else { counters.failed += 1 }
        }
        release(job)
        job.events.finish(throwing: error)
    }

    /// Closes the job's transfer, frees its blocks and budget, forgets its id, and publishes the counters — all
    /// before the consumer can see the generation end (its outcome is counted before, so whoever sees the blocks
    /// free sees the outcome too).
    private func release(_ job: Job) {
        move(job, to: .ended)
        job.transfer.withLock { $0 = .closed }
        if let sequence = job.sequence {
            cachePrefix(of: job, sequence: sequence)
            cache.free(sequence)
        }
        job.sequence = nil
        if job.committed {
            committedBlocks -= job.budgetBlocks
            job.committed = false
        }
        registry.withLock { jobs in
            if jobs[job.id] === job { jobs[job.id] = nil }
        }
        publishCounters()
    }

    /// Moves `job` to `stage`, keeping the stage counts, and publishes them.
    private func move(_ job: Job, to stage: Job.Stage) {
        switch job.stage {
        case .waiting: waitingCount -= 1
        case .active, .parked: activeCount -= 1
        case .queued, .ended: break
        }
        job.stage = stage
        switch stage {
        case .waiting: waitingCount += 1
        case .active, .parked: activeCount += 1
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

extension DecodeScheduler.PromptSource {
    var isMoved: Bool {
        if case .moved = self { return true }
        return false
    }
}

extension DecodeScheduler {
    /// Where a transfer into a generation's reserved blocks stands. Guarded by the job's lock.
    enum TransferState: Sendable {
        /// Not admitted yet (or computed here).
        case pending
        /// Blocks reserved: where each layer's bytes go (per layer, per block).
        case awaiting([[KVImportSlice]])
        /// A transport writes into the blocks; it last made progress (started, or landed a layer) at `progressAt`.
        case receiving(
            [[KVImportSlice]], transport: String, started: ContinuousClock.Instant, progressAt: ContinuousClock.Instant)
        /// Every layer and the prompt's logits arrived; the scheduler takes it from here.
        case arrived(logits: [Float], handoff: KVHandoffSummary)
        /// The transport gave up and writes nothing more (its error in words).
        case failed(String)
        /// The generation ended: arrivals are refused and the blocks may be reused.
        case closed

        var name: String {
            switch self {
            case .pending: "not admitted yet"
            case .awaiting: "waiting for its KV"
            case .receiving: "already receiving its KV"
            case .arrived: "already received"
            case .failed: "failed"
            case .closed: "closed"
            }
        }
    }

    /// Where a parked generation stands. Guarded by the job's lock.
    enum DepartureState {
        /// Not parked.
        case none
        /// Paused: its blocks hold still until it moves or resumes.
        case parked
        /// A transport reads its blocks.
        case shipping
        /// Its KV reached another worker: the blocks may go.
        case moved
        /// It goes on here, its events to this stream.
        case resuming(AsyncThrowingStream<GenerationEvent, any Error>.Continuation)
    }

    /// One generation from `open` until its stream ends. The scheduler thread alone touches the unguarded state.
    final class Job: @unchecked Sendable {
        let id: String
        let source: PromptSource
        /// Replaced when a parked generation resumes (scheduler thread).
        var events: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
        /// Blocks for prompt + max new tokens: committed while the generation is admitted.
        let budgetBlocks: Int
        let promptCount: Int
        /// Positions whose KV a transport lands: the prompt, or for a moved generation prompt + generated but the last.
        let kvTokenCount: Int
        let movable: Bool
        let opened = ContinuousClock.now
        let transfer = Mutex<TransferState>(.pending)
        let departure = Mutex<DepartureState>(.none)
        private let cancelled = Mutex<String?>(nil)
        /// Resumed once the scheduler admitted or refused the generation (set before it can see the job).
        var admissionWaiter: CheckedContinuation<Result<Void, GenerationError>, Never>?

        enum Stage { case queued, waiting, active, parked, ended }

        var state: GenerationState
        var stage = Stage.queued
        var committed = false
        var sequence: SequenceID?
        var sampler: Sampler?
        var lastToken: Int32 = 0
        /// Tokens sampled by this run (a continued state's earlier ones not included).
        var sampledHere = 0
        var done = false
        /// When the scheduler reserved the blocks a transfer lands in.
        var admittedAt: ContinuousClock.Instant?
        var timedOut = false
        var firstTokenAt: ContinuousClock.Instant?
        var handoff: KVHandoffSummary?
        /// Its prompt ran here, or arrived whole, so its blocks go to the prefix index.
        var cachesPrefix = false
        /// It was parked once (it is not parked again).
        var offered = false
        /// A transfer's prompt positions held from the prefix cache at admission (written before the admission
        /// resolves, read by transport threads).
        let cachedPromptTokens = Atomic<Int>(0)

        init(
            state: GenerationState, source: PromptSource, events: AsyncThrowingStream<GenerationEvent, any Error>.Continuation,
            budgetBlocks: Int, movable: Bool
        ) {
            id = state.request.id
            promptCount = state.request.prompt.count
            kvTokenCount = source.isMoved ? promptCount + state.generated.count - 1 : promptCount
            self.movable = movable
            self.state = state
            self.source = source
            self.events = events
            self.budgetBlocks = budgetBlocks
        }

        var timeoutSeconds: Double {
            guard let (timeout, _) = source.arrivalBounds else { return 0 }
            return timeout / .seconds(1)
        }

        var progressSeconds: Double {
            guard let (timeout, progress) = source.arrivalBounds else { return 0 }
            return (progress ?? timeout) / .seconds(1)
        }

        /// When an awaited transfer is late: `timeout` after the admission until it starts, then `progress` after
        /// its last progress. Nil when nothing is awaited.
        var transferDeadline: ContinuousClock.Instant? {
            guard let (timeout, progress) = source.arrivalBounds, let admittedAt else { return nil }
            return transfer.withLock { state in
                switch state {
                case .awaiting: admittedAt + timeout
                case .receiving(_, _, _, let progressAt): progressAt + (progress ?? timeout)
                default: nil
                }
            }
        }

        /// Marks the job cancelled (the first reason wins). A transfer not yet writing is refused from now on; one
        /// writing stops at its next layer.
        func cancel(reason: String) {
            cancelled.withLock { if $0 == nil { $0 = reason } }
            transfer.withLock { state in
                switch state {
                case .pending, .awaiting: state = .failed("cancelled: \(reason)")
                default: break
                }
            }
        }

        var cancellation: String? { cancelled.withLock { $0 } }

        /// Whether the scheduler can act on a parked job now: it moved, resumes, or was cancelled while no transport
        /// reads it.
        var departureNeedsAttention: Bool {
            switch departure.withLock({ $0 }) {
            case .moved, .resuming: true
            case .parked: cancellation != nil
            case .shipping, .none: false
            }
        }

        /// Whether the scheduler can act on it now (a cancelled job whose transfer still writes must wait for the
        /// transport's `fail`, which signals).
        var needsAttention: Bool {
            let cancelled = cancellation != nil
            return transfer.withLock { state in
                switch state {
                case .arrived, .failed: true
                case .receiving: false
                default: cancelled
                }
            }
        }
    }
}

