import Foundation
import Synchronization
import Inference
import KVTransport

/// What one shipment did.
public struct KVShipmentReport: Sendable {
    public var transfer: KVTransferReport
    public var promptTokens: Int
    /// Prompt positions the receiver held already, and the bytes of their KV that were not sent.
    public var receiverCachedTokens: Int
    public var bytesNotSent: Int
    /// From the start of the call until prefill's logits were ready.
    public var prefillSeconds: Double
    /// From the start of the call until the receiver confirmed the completion.
    public var totalSeconds: Double
}

/// The prefill worker's half of a disaggregated request: runs the prompt through a `PrefillEngine` and streams its
/// KV to a decode worker layer by layer — layer L goes on the wire while layer L+1 computes — then sends the logits
/// after the prompt's last token. It never samples: the decode worker owns every draw of a generation.
///
/// Shipments may run concurrently: their prompts are batched into shared forward passes by a `PrefillBatcher`,
/// whose one thread owns the engine and its cache (prefill is CPU-bound and would otherwise block the async
/// executor the transport needs). Each finished layer is queued for its shipment's sender as the cache blocks
/// that hold it — the transport reads them in place, so compute spends no time copying — at most
/// `maxBufferedLayers` at a time: when a sender falls behind (flow control), compute waits. (A finished layer's
/// blocks are not written again while later layers compute, and the sequence is freed only after the transfer.)
/// The sequence is freed from the prefill cache before the call returns, whatever happened. While a shipment
/// runs, the engine and its cache belong to the shipper's thread: use them directly only between shipments.
public final class PrefillKVShipper: Sendable {
    public let engine: PrefillEngine
    public let identity: KVCompatibilityIdentity
    public let maxBufferedLayers: Int
    private let batcher: PrefillBatcher

    /// - Parameters:
    ///   - identity: must describe `engine`'s model and cache (see `KVCompatibilityIdentity(model:tokenizer:layout:)`).
    ///   - maxBufferedLayers: layers queued for each sender, at most (bounds memory).
    ///   - prefixCaching: start a prompt from the whole blocks of it the cache still holds.
    public init(
        engine: PrefillEngine, identity: KVCompatibilityIdentity, maxBufferedLayers: Int = 4, prefixCaching: Bool = true
    ) throws(WorkerError) {
        guard identity.describes(engine.cache.layout) else {
            throw WorkerError(.invalidArgument, "the KV identity does not describe the prefill engine's cache layout")
        }
        guard maxBufferedLayers >= 1 else {
            throw WorkerError(.invalidArgument, "maxBufferedLayers must be at least 1, got \(maxBufferedLayers)")
        }
        self.engine = engine
        self.identity = identity
        self.maxBufferedLayers = maxBufferedLayers
        batcher = PrefillBatcher(engine: engine, prefixCaching: prefixCaching)
    }

    deinit { batcher.stop() }

    /// Prompts waiting for cache room or their first forward pass.
    public var waiting: Int { batcher.waiting }
    /// Prompts holding KV in the prefill cache (being prefilled or sent).
    public var admitted: Int { batcher.admitted }
    /// Admitted prompts still being prefilled (the rest of `admitted` are being sent).
    public var computing: Int { batcher.computing }
    /// KV blocks of the prefill cache reserved by admitted prompts.
    public var reservedBlocks: Int { batcher.reserved }
    /// Prompt tokens admitted so far, and how many of them came from the prefix cache (whole blocks of a prompt
    /// computed before).
    public var promptTokens: (all: Int, cached: Int) { batcher.promptTokens }
    /// Forward passes run so far and the prompt tokens they held: their ratio is the mean tokens per pass.
    public var passes: (count: Int, tokens: Int) {
        let p = batcher.passes
        return (p.count, p.rows)
    }

    /// Prefills `prompt` and streams its KV from position `receiverHolds` on, then the logits after its last token,
    /// through `sender` under `requestID`.
    ///
    /// `receiverHolds`: the prompt positions whose KV the receiver's prefix cache holds already (a multiple of the
    /// block size below the prompt's length). The whole prompt is computed here all the same (attention needs every
    /// position's KV; this worker's own cache spares what it holds), but only the blocks after those travel, and the
    /// receiver refuses the transfer unless it holds exactly that many.
    ///
    /// `onStart` is called when the prompt's first forward pass starts (it may wait behind others until then).
    ///
    /// The prompt must have been validated by the caller's edge (ids in the vocabulary, fewer than the context).
    /// Throws `.invalidArgument` for a prompt longer than this worker's context or cache, or a `receiverHolds` that
    /// cannot start a transfer; `.inference` when prefill fails, `.transfer` when the transport does (the receiver
    /// has then freed what it had).
    public func ship(
        requestID: String, prompt: [Int32], receiverHolds: Int = 0, via sender: any KVTransferSender,
        onStart: (@Sendable () -> Void)? = nil
    ) async throws(WorkerError) -> KVShipmentReport {
        precondition(!prompt.isEmpty, "PrefillKVShipper.ship needs a validated, non-empty prompt")
        guard prompt.count <= engine.maxContext else {
            throw WorkerError(
                .invalidArgument, "the prompt has \(prompt.count) tokens; this prefill worker's context is \(engine.maxContext)")
        }
        let request = KVTransferRequest(requestID: requestID, identity: identity, tokenCount: prompt.count, firstToken: receiverHolds)
        if let problem = request.firstTokenProblem {
            throw WorkerError(.invalidArgument, "request \(requestID): the decode worker's cached prefix is invalid: \(problem)")
        }
        let blocks = engine.cache.layout.blocks(forTokens: prompt.count)
        guard blocks <= engine.cache.blockCount else {
            throw WorkerError(
                .invalidArgument,
                "the prompt needs \(blocks) KV blocks; this prefill worker's cache has \(engine.cache.blockCount)")
        }

        let started = ContinuousClock.now
        let queue = LayerQueue(capacity: maxBufferedLayers)
        let job = PrefillBatcher.Job(
            prompt: prompt, queue: queue, started: started, blocks: blocks, sendFrom: receiverHolds, onStart: onStart)
        batcher.submit(job)

        let outcome = Outcome()
        let result: Result<KVTransferReport, KVTransportError>
        // Open the transfer once this prompt's first layer (or its failure) is ready, not at arrival: a prompt
        // queued behind others, or a long one in its early chunks, would otherwise hold a silent transfer that the
        // receiver's idle timeout ends. The handshake then overlaps the computation of the next layers.
        var items = queue.items.makeAsyncIterator()
        let first: LayerQueue.Item?
        do { first = try await items.next() } catch { first = nil }
        do {
            result = .success(
                try await sender.transfer(request) { transfer in
                    var pending = first
                    while let item = try await Self.next(&pending, &items) {
                        switch item {
                        case .layer(let layer, .inPlace(let regions)):
                            queue.taken()
                            try await transfer.send(layer: layer, regions: regions)
                        case .layer(let layer, .copy(let bytes)):
                            queue.taken()
                            try await transfer.send(layer: layer, bytes: bytes)
                        case .done(let logits, let prefillSeconds):
                            outcome.set(prefillSeconds: prefillSeconds)
                            return KVTransferCompletion(tokenCount: prompt.count, logits: logits)
                        case .failed(let error):
                            outcome.set(error: error)
                            throw error
                        }
                    }
                    throw WorkerError(.inference, "prefill ended without a result")
                })
        } catch {
            result = .failure(error)
        }
        // Silence the lane's puts for this prompt, take it out of the lane and free its sequence.
        queue.cancel()
        await batcher.release(job)

        switch result {
        case .success(let report):
            guard let prefillSeconds = outcome.prefillSeconds else {
                throw WorkerError(.inference, "the transfer completed without the prompt's logits")
            }
            return KVShipmentReport(
                transfer: report, promptTokens: prompt.count, receiverCachedTokens: receiverHolds,
                bytesNotSent: (identity.layerByteCount(tokenCount: prompt.count) - request.layerByteCount) * identity.layers,
                prefillSeconds: prefillSeconds, totalSeconds: (started.duration(to: .now) / .seconds(1)))
        case .failure(let error):
            // A failed prefill surfaces to the transport as a cancelled producer: report the real cause.
            if let computeError = outcome.error { throw computeError }
            throw WorkerError(.transfer, "KV transfer of request \(requestID) failed: \(error.message)", cause: error)
        }
    }

    /// The item taken out before the transfer opened, then the queue's next ones.
    private static func next(
        _ pending: inout LayerQueue.Item?, _ items: inout AsyncThrowingStream<LayerQueue.Item, any Error>.Iterator
    ) async throws -> LayerQueue.Item? {
        if let item = pending {
            pending = nil
            return item
        }
        return try await items.next()
    }
}

/// What the compute thread produced, read after the transfer.
private final class Outcome: Sendable {
    private let state = Mutex<(prefillSeconds: Double?, error: WorkerError?)>((nil, nil))
    func set(prefillSeconds: Double) { state.withLock { $0.prefillSeconds = prefillSeconds } }
    func set(error: WorkerError) { state.withLock { $0.error = error } }
    var prefillSeconds: Double? { state.withLock { $0.prefillSeconds } }
    var error: WorkerError? { state.withLock { $0.error } }
}
