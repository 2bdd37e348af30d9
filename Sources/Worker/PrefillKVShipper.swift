import Foundation
import Synchronization
import Inference
import KVTransport

/// What one shipment did.
public struct KVShipmentReport: Sendable {
    public var transfer: KVTransferReport
    /// The token prefill sampled after the prompt (sent in the completion).
    public var firstToken: Int32
    /// The seed the sampler used (reproduces the run when the request gave none).
    public var seed: UInt64
    public var promptTokens: Int
    /// From the start of the call until prefill's logits were ready.
    public var prefillSeconds: Double
    /// From the start of the call until the receiver confirmed the completion.
    public var totalSeconds: Double
}

/// The prefill worker's half of a disaggregated request: runs the prompt through a `PrefillEngine` and streams its
/// KV to a decode worker layer by layer — layer L goes on the wire while layer L+1 computes — then sends the first
/// sampled token with the sampler's state.
///
/// Prefill runs on a dedicated thread (it is CPU-bound and would otherwise block the async executor the transport
/// needs); each finished layer is queued for the sender as the cache blocks that hold it — the transport reads them
/// in place, so compute spends no time copying — at most `maxBufferedLayers` at a time: when the sender falls
/// behind (flow control), compute waits. (A finished layer's blocks are not written again while later layers
/// compute, and the sequence is freed only after the transfer.) The sequence is freed from the prefill
/// cache before the call returns, whatever happened. One shipment at a time per shipper.
public final class PrefillKVShipper: Sendable {
    public let engine: PrefillEngine
    public let identity: KVCompatibilityIdentity
    public let maxBufferedLayers: Int
    private let busy = Mutex(false)

    /// - Parameters:
    ///   - identity: must describe `engine`'s model and cache (see `KVCompatibilityIdentity(model:tokenizer:layout:)`).
    ///   - maxBufferedLayers: layers copied out and waiting for the sender, at most (bounds memory).
    public init(engine: PrefillEngine, identity: KVCompatibilityIdentity, maxBufferedLayers: Int = 4) throws(WorkerError) {
        let layout = engine.cache.layout
        guard identity.layers == layout.layers, identity.kvHeads == layout.kvHeads, identity.headDim == layout.headDim,
            identity.blockSize == layout.blockSize, identity.elementType.byteWidth == layout.dataType.byteWidth
        else {
            throw WorkerError(.invalidArgument, "the KV identity does not describe the prefill engine's cache layout")
        }
        guard maxBufferedLayers >= 1 else {
            throw WorkerError(.invalidArgument, "maxBufferedLayers must be at least 1, got \(maxBufferedLayers)")
        }
        self.engine = engine
        self.identity = identity
        self.maxBufferedLayers = maxBufferedLayers
    }

    /// Prefills `prompt`, streams its KV through `sender` under `requestID`, and sends the first token drawn with
    /// `parameters` (seeded: the decode side continues the same random stream).
    ///
    /// Throws `.invalidArgument` for an empty prompt or bad parameters, `.inference` when prefill fails, `.transfer`
    /// when the transport does (the receiver has then freed what it had), `.busy` when a shipment is running.
    public func ship(
        requestID: String, prompt: [Int32], parameters: SamplingParameters, via sender: any KVTransferSender
    ) async throws(WorkerError) -> KVShipmentReport {
        let vocabulary = engine.model.configuration.vocabularySize
        guard !prompt.isEmpty else { throw WorkerError(.invalidArgument, "the prompt is empty") }
        let validated: SamplingParameters
        do { validated = try parameters.validated(vocabularySize: vocabulary) } catch {
            throw WorkerError(.invalidArgument, error.message, cause: error)
        }
        guard busy.withLock({ busy in
            defer { busy = true }
            return !busy
        }) else { throw WorkerError(.busy, "a shipment is already running on this prefill worker") }
        defer { busy.withLock { $0 = false } }

        let started = ContinuousClock.now
        let cache = engine.cache
        let sequence = cache.createSequence()
        let queue = LayerQueue(capacity: maxBufferedLayers)
        let engine = self.engine
        let thread = Thread {
            var sampler = SamplingHandoff.sampler(parameters: validated, prompt: prompt, vocabularySize: vocabulary)
            do {
                var logits = try engine.prefill(prompt, sequence: sequence) { layer in
                    queue.put {
                        if let slices = try? cache.importTarget(sequence, layer: layer) {
                            return .layer(layer, .inPlace(slices.map { UnsafeRawBufferPointer(start: $0.pointer, count: $0.byteCount) }))
                        }
                        // Blocks shared with another sequence: send a copy.
                        do { return .layer(layer, .copy(try cache.exportLayer(sequence, layer: layer))) } catch {
                            return .failed(WorkerError(.inference, "could not export layer \(layer)", cause: error))
                        }
                    }
                }
                let prefillSeconds = started.duration(to: .now).seconds
                let first = sampler.sample(logits: &logits)
                let logprobs = first.logprob.map { KVFirstTokenLogprobs(logprob: $0, top: first.topLogprobs) }
                queue.finish(.done(first.id, seed: sampler.seed, prefillSeconds: prefillSeconds, logprobs: logprobs))
            } catch {
                queue.finish(.failed(WorkerError(.inference, "prefill of \(prompt.count) tokens failed", cause: error)))
            }
        }
        thread.name = "baton.prefill-shipper"
        thread.stackSize = 8 << 20
        thread.start()

        let request = KVTransferRequest(requestID: requestID, identity: identity, tokenCount: prompt.count)
        let outcome = Outcome()
        let result: Result<KVTransferReport, KVTransportError>
        do {
            result = .success(
                try await sender.transfer(request) { transfer in
                    for try await item in queue.items {
                        switch item {
                        case .layer(let layer, .inPlace(let regions)):
                            queue.taken()
                            try await transfer.send(layer: layer, regions: regions)
                        case .layer(let layer, .copy(let bytes)):
                            queue.taken()
                            try await transfer.send(layer: layer, bytes: bytes)
                        case .done(let first, let seed, let prefillSeconds, let logprobs):
                            outcome.set(first: first, seed: seed, prefillSeconds: prefillSeconds)
                            return KVTransferCompletion(
                                firstToken: first,
                                samplingState: try SamplingHandoff.state(parameters: validated, seed: seed, prompt: prompt),
                                tokenCount: prompt.count, firstTokenLogprobs: logprobs)
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
        // Let the compute thread run out (its callbacks now return at once), then free the sequence.
        queue.cancel()
        do { for try await _ in queue.items {} } catch {}
        cache.free(sequence)

        switch result {
        case .success(let report):
            guard let (first, seed, prefillSeconds) = outcome.result else {
                throw WorkerError(.inference, "the transfer completed without a first token")
            }
            return KVShipmentReport(
                transfer: report, firstToken: first, seed: seed, promptTokens: prompt.count,
                prefillSeconds: prefillSeconds, totalSeconds: started.duration(to: .now).seconds)
        case .failure(let error):
            // A failed prefill surfaces to the transport as a cancelled producer: report the real cause.
            if let computeError = outcome.error { throw computeError }
            throw WorkerError(.transfer, "KV transfer of request \(requestID) failed: \(error.message)", cause: error)
        }
    }
}

/// The bounded bridge from the synchronous compute thread to the asynchronous sender.
private final class LayerQueue: @unchecked Sendable {
    /// A finished layer: its blocks in the prefill cache (in layer-export order), or a copy.
    enum Layer: @unchecked Sendable {
        case inPlace([UnsafeRawBufferPointer])
        case copy([UInt8])
    }

    enum Item: Sendable {
        case layer(Int, Layer)
        case done(Int32, seed: UInt64, prefillSeconds: Double, logprobs: KVFirstTokenLogprobs?)
        case failed(WorkerError)
    }

    let items: AsyncThrowingStream<Item, any Error>
    private let continuation: AsyncThrowingStream<Item, any Error>.Continuation
    /// Guards `room` and `cancelled`; the compute thread waits on it for room.
    private let condition = NSCondition()
    /// Layers that may still be queued before the sender takes one.
    private var room: Int
    private var cancelled = false

    init(capacity: Int) {
        (items, continuation) = AsyncThrowingStream.makeStream()
        room = capacity
    }

    /// Compute thread: waits for room, then queues what `make` builds (not built at all once cancelled).
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

    /// Compute thread: the last item; ends the stream.
    func finish(_ item: Item) {
        continuation.yield(item)
        continuation.finish()
    }

    /// Sender gave up: unblocks and silences the compute thread.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}

/// What the compute thread produced, read after the transfer.
private final class Outcome: Sendable {
    private let state = Mutex<(result: (Int32, UInt64, Double)?, error: WorkerError?)>((nil, nil))
    func set(first: Int32, seed: UInt64, prefillSeconds: Double) { state.withLock { $0.result = (first, seed, prefillSeconds) } }
    func set(error: WorkerError) { state.withLock { $0.error = error } }
    var result: (Int32, UInt64, Double)? { state.withLock { $0.result } }
    var error: WorkerError? { state.withLock { $0.error } }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
