import Foundation
import Inference
import Router
import Synchronization
import Tokenization

/// Serves the router's ``GenerationBackend`` from engines in this process: each prompt on the prefill (sgemm)
/// path, then generation for all active requests together on the decode path (continuous batching: requests
/// join and leave between steps).
///
/// One scheduler thread owns the engines and the KV cache. Requests reach it through a locked queue; tokens
/// leave through each request's stream (a continuation `yield` per token — no actor hop). A client that goes
/// away terminates its stream, which marks the request cancelled; the scheduler frees its KV blocks before
/// the next step.
///
/// Call ``start()`` once before serving and ``shutdown()`` to stop; requests left over then fail.
public final class LocalGenerationBackend: GenerationBackend, @unchecked Sendable {
    /// A request the scheduler owns.
    private final class Job: @unchecked Sendable {
        let request: GenerationRequest
        let continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
        let cancelled = Atomic<Bool>(false)
        var sequence: SequenceID?
        var sampler: Sampler
        var lastToken: Int32 = 0
        var generated = 0
        /// Set when the request ended during a step; the scheduler drops it from the active list.
        var done = false

        init(request: GenerationRequest, sampler: Sampler, continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation) {
            self.request = request
            self.sampler = sampler
            self.continuation = continuation
        }
    }

    private struct Queue {
        var pending: [Job] = []
        var running = false
        var stopped = false
    }

    public let tokenizer: Tokenizer
    private let prefill: PrefillEngine
    private let decode: DecodeEngine
    private let cache: PagedKVCache
    private let vocabularySize: Int
    private let queue = Mutex(Queue())
    /// Signalled when work arrives or on shutdown; the scheduler sleeps on it when idle.
    private let wake = NSCondition()
    private var thread: Thread?
    /// One decode step's inputs, reused so a step allocates nothing (scheduler thread only).
    private var stepInputs: [DecodeInput] = []
    /// The cache's free block count as of the scheduler's last pass (the cache itself is the scheduler's alone).
    private let freeBlocks = Atomic<Int>(0)

    /// - Parameters:
    ///   - kvBlocks: KV cache blocks shared by all requests (16 tokens each by default).
    ///   - maxBatch: most sequences in one decode step; more active requests take turns.
    public init(
        model: TransformerModel, tokenizer: Tokenizer, threads: Int, kvBlocks: Int, maxBatch: Int = 8,
        maxContext: Int? = nil
    ) throws(InferenceError) {
        cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: kvBlocks)
        prefill = try PrefillEngine(model: model, cache: cache, threads: threads, maxContext: maxContext)
        decode = try DecodeEngine(model: model, cache: cache, threads: threads, maxBatch: maxBatch, maxContext: maxContext)
        self.tokenizer = tokenizer
        vocabularySize = model.configuration.vocabularySize
        freeBlocks.store(cache.freeBlockCount, ordering: .relaxed)
    }

    /// Tokens a sequence may hold (prompt and generation).
    public var contextLength: Int { min(prefill.maxContext, decode.maxContext) }

    /// Starts the scheduler thread.
    public func start() {
        let started = queue.withLock { q -> Bool in
            if q.running || q.stopped { return false }
            q.running = true
            return true
        }
        guard started else { return }
        let thread = Thread { [self] in run() }
        thread.name = "baton-scheduler"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops the scheduler; requests still queued or running fail with "no worker available".
    public func shutdown() {
        queue.withLock { $0.stopped = true }
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }

    public func health() async -> BackendHealth {
        let state = queue.withLock { ($0.running, $0.stopped) }
        if state.1 { return .unavailable(reason: "the local engine is shutting down") }
        if !state.0 { return .unavailable(reason: "the local engine has not started") }
        return .ready
    }

    public func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        guard request.promptTokens.count < contextLength else {
            throw RouterError(
                .contextLengthExceeded,
                "the prompt has \(request.promptTokens.count) tokens; this worker's context holds \(contextLength)",
                param: "messages")
        }
        let parameters: Inference.SamplingParameters
        do {
            parameters = try Inference.SamplingParameters(
                temperature: request.sampling.temperature, topP: request.sampling.topP,
                frequencyPenalty: request.sampling.frequencyPenalty, presencePenalty: request.sampling.presencePenalty,
                logitBias: request.sampling.logitBias, seed: request.sampling.seed,
                logprobs: request.logprobs ? request.topLogprobs : nil
            ).validated(vocabularySize: vocabularySize)
        } catch {
            throw RouterError(.invalidParameter, error.message, cause: error)
        }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let job = Job(
            request: request, sampler: Sampler(parameters: parameters, vocabularySize: vocabularySize),
            continuation: continuation)
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination {
                job.cancelled.store(true, ordering: .relaxed)
                self?.signal()
            }
        }
        let accepted = queue.withLock { q -> Bool in
            guard q.running && !q.stopped else { return false }
            q.pending.append(job)
            return true
        }
        guard accepted else {
            throw RouterError(.noWorkerAvailable, "the local engine is not running")
        }
        signal()
        return stream
    }

    private func signal() {
        wake.lock()
        wake.signal()
        wake.unlock()
    }

    // MARK: - Scheduler (runs on its own thread; owns the engines and the cache)

    private func run() {
        var active: [Job] = []
        while true {
            let (arrivals, stopped) = queue.withLock { q -> ([Job], Bool) in
                defer { q.pending.removeAll() }
                return (q.pending, q.stopped)
            }
            if stopped {
                for job in active + arrivals {
                    finish(job, failing: RouterError(.noWorkerAvailable, "the local engine shut down"))
                }
                return
            }
            var deferred: [Job] = []
            for job in arrivals {
                if job.cancelled.load(ordering: .relaxed) { finish(job, reason: nil); continue }
                if !deferred.isEmpty { deferred.append(job); continue }
                switch admit(job) {
                case .running: active.append(job)
                case .finished: break
                case .noRoom:
                    // Blocks free up as active requests end; with none active, the prompt can never fit.
                    if active.isEmpty {
                        finish(job, failing: RouterError(
                            .overloaded, "the KV cache cannot hold this prompt", retryAfterSeconds: 1))
                    } else {
                        deferred.append(job)
                    }
                }
            }
            if !deferred.isEmpty {
                queue.withLock { $0.pending.insert(contentsOf: deferred, at: 0) }
            }
            active.removeAll { job in
                guard job.cancelled.load(ordering: .relaxed) else { return false }
                finish(job, reason: nil)
                return true
            }
            freeBlocks.store(cache.freeBlockCount, ordering: .releasing)
            if active.isEmpty {
                wake.lock()
                let idle = queue.withLock { $0.pending.isEmpty && !$0.stopped }
                if idle { wake.wait() }
                wake.unlock()
                continue
            }
            step(active)
            active.removeAll { $0.done }
        }
    }

    private enum Admission { case running, finished, noRoom }

    /// Runs the prompt on the prefill path and emits the first token.
    private func admit(_ job: Job) -> Admission {
        let sequence = cache.createSequence()
        job.sequence = sequence
        var logits: [Float]
        do {
            logits = try prefill.prefill(job.request.promptTokens, sequence: sequence)
        } catch {
            cache.free(sequence)
            job.sequence = nil
            if error.code == .kvCacheFull { return .noRoom }
            finish(job, failing: RouterError(.backendFailure, error.message, cause: error))
            return .finished
        }
        job.sampler.accept(contentsOf: job.request.promptTokens)
        let sampled = job.sampler.sample(logits: &logits)
        return accept(sampled, for: job) ? .running : .finished
    }

    /// One decode step for up to `maxBatch` jobs at a time; jobs that end are marked `done`.
    private func step(_ jobs: [Job]) {
        var start = 0
        while start < jobs.count {
            let batch = jobs[start..<min(start + decode.maxBatch, jobs.count)]
            start += batch.count
            stepInputs.removeAll(keepingCapacity: true)
            for job in batch { stepInputs.append(DecodeInput(sequence: job.sequence!, token: job.lastToken)) }
            do {
                try decode.step(stepInputs)
            } catch {
                let failure = error.code == .kvCacheFull
                    ? RouterError(.overloaded, "the KV cache is full", retryAfterSeconds: 1, cause: error)
                    : RouterError(.backendFailure, error.message, cause: error)
                for job in batch {
                    finish(job, failing: failure)
                    job.done = true
                }
                continue
            }
            for (row, job) in batch.enumerated() {
                let sampled = decode.withLogits(row: row) { job.sampler.sample(logits: $0) }
                if !accept(sampled, for: job) { job.done = true }
            }
        }
    }

    /// Emits `sampled` (or ends the request); returns whether the job goes on.
    private func accept(_ sampled: SampledToken, for job: Job) -> Bool {
        let token = sampled.id
        job.generated += 1
        if tokenizer.isEndOfGeneration(token) {
            finish(job, reason: .endOfGeneration)
            return false
        }
        // `sample` already recorded the token in the penalty history (recording it again would double-count it).
        job.lastToken = token
        job.continuation.yield(.token(GeneratedToken(
            id: token, logprob: sampled.logprob,
            topLogprobs: sampled.topLogprobs.map { TokenLogprob(id: $0.0, logprob: $0.1) })))
        if job.generated >= job.request.maxTokens {
            finish(job, reason: .maxTokens)
            return false
        }
        if job.request.promptTokens.count + job.generated >= contextLength {
            finish(job, reason: .contextFull)
            return false
        }
        return true
    }

    /// Frees the job's KV and ends its stream (`reason` nil: the client went away, nothing to tell it).
    private func finish(_ job: Job, reason: GenerationFinishReason?) {
        release(job)
        if let reason {
            job.continuation.yield(.finished(GenerationSummary(
                reason: reason, promptTokens: job.request.promptTokens.count, completionTokens: job.generated)))
        }
        job.continuation.finish()
    }

    private func finish(_ job: Job, failing error: RouterError) {
        release(job)
        job.continuation.finish(throwing: error)
    }

    /// Frees the job's blocks and publishes the new free count before the client can see the stream end.
    private func release(_ job: Job) {
        if let sequence = job.sequence { cache.free(sequence) }
        job.sequence = nil
        freeBlocks.store(cache.freeBlockCount, ordering: .releasing)
    }

    /// KV blocks not held by any request, as of the scheduler's last pass (for load reports and tests).
    public var freeKVBlocks: Int { freeBlocks.load(ordering: .acquiring) }
    public var totalKVBlocks: Int { cache.blockCount }
}
