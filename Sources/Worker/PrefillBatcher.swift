import Foundation
import Generation
import Inference
import KVTransport
import Synchronization

/// The prefill worker's compute lane: one thread that owns the `PrefillEngine` and its cache and runs every queued
/// prompt through forward passes that batch several prompts together, so their rows share one read of the weights
/// (for short prompts that read, ~0.5 GB of f32 weights for a 135M model, is most of a pass's time).
///
/// Prompts are admitted first come, first served while the cache has room for their whole KV (reserved at
/// admission, so a pass never runs out of blocks). A pass is packed in admission order with whole prompts while
/// they fit in `engine.chunkSize` rows; a prompt is split only when it alone is longer than a pass (it then opens
/// passes of its own), so a short prompt never waits on a pass filled with the chunks of a long one behind it.
///
/// Each prompt's finished layers and then its last position's logits go to its `LayerQueue`; the shipment that submitted it
/// sends them. The sequence stays in the cache until the shipment calls `release`, because the sender reads
/// layers in place; the lane frees it between passes (the cache is not thread-safe and only this thread touches it).
final class PrefillBatcher: @unchecked Sendable {
    final class Job: @unchecked Sendable {
        let prompt: [Int32]
        let queue: LayerQueue
        let started: ContinuousClock.Instant
        let blocks: Int
        /// Called on the lane when the prompt's first pass starts: until then it was waiting, not computing.
        let onStart: (@Sendable () -> Void)?
        /// The first position whose KV goes to the decode worker (it holds the ones before): the whole prompt is
        /// computed, only its blocks from here on are sent.
        let sendFrom: Int
        /// Lane thread only from here on.
        var sequence: SequenceID?
        var progress = 0
        var finished = false
        var computing = false
        /// Under the batcher's lock.
        var releaseWaiter: CheckedContinuation<Void, Never>?

        init(
            prompt: [Int32], queue: LayerQueue, started: ContinuousClock.Instant, blocks: Int, sendFrom: Int = 0,
            onStart: (@Sendable () -> Void)? = nil
        ) {
            self.prompt = prompt
            self.queue = queue
            self.started = started
            self.blocks = blocks
            self.onStart = onStart
            self.sendFrom = sendFrom
        }
    }

    let engine: PrefillEngine
    let prefixCaching: Bool
    /// Guards `pending`, `releases` and `stopped`; the lane waits on it for work.
    private let condition = NSCondition()
    private var pending: [Job] = []
    private var releases: [Job] = []
    private var stopped = false
    /// Lane thread only: admitted jobs not yet finished, in admission order; jobs admitted and not yet released,
    /// and their blocks.
    private var active: [Job] = []
    private var held = 0
    private var reservedBlocks = 0
    private let admittedCount = Atomic<Int>(0)
    private let computingCount = Atomic<Int>(0)
    private let reservedCount = Atomic<Int>(0)
    private let passCount = Atomic<Int>(0)
    private let batchedRows = Atomic<Int>(0)
    private let promptTokenCount = Atomic<Int>(0)
    private let cachedTokenCount = Atomic<Int>(0)

    init(engine: PrefillEngine, prefixCaching: Bool = true) {
        self.engine = engine
        self.prefixCaching = prefixCaching
        let thread = Thread { [self] in loop() }
        thread.name = "baton.prefill"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Prompts waiting for room in the cache or their first pass.
    var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending.count
    }
    /// Prompts admitted and not yet released (running, or shipped and being sent).
    var admitted: Int { admittedCount.load(ordering: .relaxed) }
    /// Admitted prompts whose prefill has not finished.
    var computing: Int { computingCount.load(ordering: .relaxed) }
    /// KV blocks reserved by admitted prompts.
    var reserved: Int { reservedCount.load(ordering: .relaxed) }
    /// Forward passes run, and the prompt rows they held (rows / passes = mean batch size in tokens).
    var passes: (count: Int, rows: Int) { (passCount.load(ordering: .relaxed), batchedRows.load(ordering: .relaxed)) }
    /// Prompt tokens admitted since the start, and how many of them came from the prefix cache.
    var promptTokens: (all: Int, cached: Int) { (promptTokenCount.load(ordering: .relaxed), cachedTokenCount.load(ordering: .relaxed)) }

    /// Queues a prompt; its layers and outcome arrive on `job.queue`.
    func submit(_ job: Job) {
        condition.lock()
        pending.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Takes `job` out of the lane (cancelling it if it has not finished) and frees its sequence; returns once
    /// the lane no longer touches it. Call after `job.queue.cancel()`, so a lane blocked on the job's queue moves on.
    func release(_ job: Job) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if let index = pending.firstIndex(where: { $0 === job }) {
                pending.remove(at: index)
                condition.unlock()
                continuation.resume()
                return
            }
            job.releaseWaiter = continuation
            releases.append(job)
            condition.signal()
            condition.unlock()
        }
    }

    /// Ends the lane once it is idle; jobs still queued fail.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        let cache = engine.cache
        while true {
            condition.lock()
            while !stopped && releases.isEmpty && active.isEmpty && !canAdmit() { condition.wait() }
            let freeing = releases
            releases = []
            var admitted: [Job] = []
            while canAdmit() {
                let job = pending.removeFirst()
                reservedBlocks += job.blocks
                admitted.append(job)
            }
            let stopping = stopped && freeing.isEmpty && active.isEmpty && admitted.isEmpty
            let abandoned = stopping ? pending : []
            if stopping { pending = [] }
            condition.unlock()

            for job in freeing {
                if let index = active.firstIndex(where: { $0 === job }) { active.remove(at: index) }
                if !job.finished {
                    job.finished = true
                    job.queue.finish(.failed(WorkerError(.cancelled, "the shipment was cancelled")))
                }
                if let sequence = job.sequence {
                    cache.free(sequence)
                    job.sequence = nil
                }
                held -= 1
                reservedBlocks -= job.blocks
                // Published before the shipment resumes, so whoever sees it return sees its blocks back.
                admittedCount.store(held, ordering: .relaxed)
                reservedCount.store(reservedBlocks, ordering: .relaxed)
                condition.lock()
                let waiter = job.releaseWaiter
                job.releaseWaiter = nil
                condition.unlock()
                waiter?.resume()
            }
            for job in admitted {
                let sequence = cache.createSequence()
                job.sequence = sequence
                // Whole blocks of a prompt seen before: prefill gives a token the same bits however its prompt
                // was cut into passes and packed, so they are what this prompt's own passes would compute.
                let space = PromptPath.prefill.prefixNamespace
                job.progress = !prefixCaching ? 0 : (try? cache.adoptPrefix(
                    sequence, tokens: job.prompt, namespace: { _ in space }, limit: job.prompt.count - 1)) ?? 0
                promptTokenCount.add(job.prompt.count, ordering: .relaxed)
                cachedTokenCount.add(job.progress, ordering: .relaxed)
                active.append(job)
                held += 1
            }
            for job in abandoned {
                job.queue.finish(.failed(WorkerError(.cancelled, "the prefill worker is shutting down")))
            }
            admittedCount.store(held, ordering: .relaxed)
            computingCount.store(active.count, ordering: .relaxed)
            reservedCount.store(reservedBlocks, ordering: .relaxed)
            if stopping { return }
            runPass()
        }
    }

    /// Whether the first waiting prompt fits beside the reserved blocks (call under the lock).
    private func canAdmit() -> Bool {
        guard let next = pending.first else { return false }
        return reservedBlocks + next.blocks <= engine.cache.blockCount
    }

    private func runPass() {
        let takes = Self.plan(
            remaining: active.map { $0.prompt.count - $0.progress }, passSize: engine.chunkSize)
        let members = Array(active.prefix(takes.count))
        let chunks = zip(members, takes).map { job, take in
            PrefillChunk(
                sequence: job.sequence!, tokens: Array(job.prompt[job.progress..<job.progress + take]),
                completesPrompt: job.progress + take == job.prompt.count)
        }
        guard !chunks.isEmpty else { return }
        for job in members where !job.computing {
            job.computing = true
            job.onStart?()
        }
        let completing = members.indices.filter { chunks[$0].completesPrompt }
        let cache = engine.cache
        do {
            let logits = try engine.run(chunks) { index, layer in
                let job = members[index]
                job.queue.put {
                    if let slices = try? cache.importTarget(job.sequence!, layer: layer, from: job.sendFrom) {
                        return .layer(layer, .inPlace(slices.map { UnsafeRawBufferPointer(start: $0.pointer, count: $0.byteCount) }))
                    }
                    // Blocks shared with another sequence: send a copy.
                    do { return .layer(layer, .copy(try cache.exportLayer(job.sequence!, layer: layer, from: job.sendFrom))) } catch {
                        return .failed(WorkerError(.inference, "could not export layer \(layer)", cause: error))
                    }
                }
            }
            passCount.add(1, ordering: .relaxed)
            batchedRows.add(chunks.reduce(0) { $0 + $1.tokens.count }, ordering: .relaxed)
            for (job, chunk) in zip(members, chunks) { job.progress += chunk.tokens.count }
            for (position, index) in completing.enumerated() {
                let job = members[index]
                if prefixCaching {
                    // Entered as soon as computed, so prompts queued behind it that share the prefix reuse it.
                    let space = PromptPath.prefill.prefixNamespace
                    try? cache.registerPrefix(job.sequence!, tokens: job.prompt) { _ in space }
                }
                finish(job, .done(logits: logits[position], prefillSeconds: (job.started.duration(to: .now) / .seconds(1))))
            }
        } catch {
            for job in members {
                finish(job, .failed(WorkerError(.inference, "prefill of \(job.prompt.count) tokens failed", cause: error)))
            }
        }
    }

    /// How many tokens of each admitted prompt (given as tokens still to run, in admission order) the next pass
    /// takes: whole prompts while they fit in `passSize`, stopping at the first that does not, except that a
    /// prompt opening the pass takes a full pass when it is longer.
    /// A prompt's logits and KV are bit for bit those of the prompt alone whatever shares its passes (see
    /// `PrefillEngine`).
    static func plan(remaining: [Int], passSize: Int) -> [Int] {
        var takes: [Int] = []
        var room = passSize
        for tokens in remaining where room > 0 {
            if tokens <= room {
                takes.append(tokens)
            } else if takes.isEmpty {
                takes.append(room)
            } else {
                break
            }
            room -= takes[takes.count - 1]
        }
        return takes
    }

    private func finish(_ job: Job, _ item: LayerQueue.Item) {
        job.finished = true
        job.queue.finish(item)
        if let index = active.firstIndex(where: { $0 === job }) { active.remove(at: index) }
        computingCount.store(active.count, ordering: .relaxed)
    }
}

/// The bounded bridge from the lane's thread to one shipment's asynchronous sender.
final class LayerQueue: @unchecked Sendable {
    /// A finished layer: its blocks in the prefill cache (in layer-export order), or a copy.
    enum Layer: @unchecked Sendable {
        case inPlace([UnsafeRawBufferPointer])
        case copy([UInt8])
    }

    enum Item: Sendable {
        case layer(Int, Layer)
        /// The logits after the prompt's last token.
        case done(logits: [Float], prefillSeconds: Double)
        case failed(WorkerError)
    }

    let items: AsyncThrowingStream<Item, any Error>
    private let continuation: AsyncThrowingStream<Item, any Error>.Continuation
    /// Guards `room` and `cancelled`; the lane waits on it for room.
    private let condition = NSCondition()
    /// Layers that may still be queued before the sender takes one.
    private var room: Int
    private var cancelled = false

    init(capacity: Int) {
        (items, continuation) = AsyncThrowingStream.makeStream()
        room = capacity
    }

    /// Lane: waits for room, then queues what `make` builds (not built at all once cancelled).
    func put(_ make: () -> Item) {
        condition.lock()
        while room == 0 && !cancelled { condition.wait() }
        let proceed = !cancelled
        if proceed { room -= 1 }
        condition.unlock()
        if proceed { continuation.yield(make()) }
    }

    /// Sender: a queued layer was taken off the queue.
    func taken() {
        condition.lock()
        room += 1
        condition.signal()
        condition.unlock()
    }

    /// Lane: the last item; ends the stream.
    func finish(_ item: Item) {
        continuation.yield(item)
        continuation.finish()
    }

    /// Sender gave up: unblocks and silences the lane's puts for this shipment.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}
