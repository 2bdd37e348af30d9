import Dispatch
import Foundation
import Inference
import KVTransport
import Synchronization
import Tokenization

/// What a decode worker did with one received sequence.
public struct DecodedSequence: Sendable {
    public var requestID: String
    public var promptTokens: Int
    /// Every token of the completion, the first (sampled by prefill) included.
    public var tokens: [Int32]
    public var text: String
    public var finishReason: FinishReason
    public var seed: UInt64
    public var transport: KVTransportKind
}

/// Reported by a `DecodeKVReceiver` as its transfers progress, in order per request.
public enum DecodeEvent: Sendable {
    /// A transfer completed and its first token is known: the time-to-first-token point of a disaggregated request.
    case firstToken(requestID: String, token: Int32)
    /// Generation ended.
    case finished(DecodedSequence)
    /// The transfer failed or generation could not run; nothing of the request is left in the cache.
    case failed(requestID: String, error: WorkerError)
}

/// The decode worker's half: a `KVTransferReceiver` that lands each verified layer in its `PagedKVCache` and, once
/// the completion arrives, continues the sequence on its `DecodeEngine` from the first token — with the sampler
/// state rebuilt from the completion, so the tokens equal single-process generation.
///
/// The cache and engine are shared between transfers and generation and guarded by one lock: imports (a memcpy
/// per layer) slip in between decode steps. Generations run one after another on a dedicated serial queue.
/// `events` reports progress; a failed transfer frees its sequence at once.
public final class DecodeKVReceiver: KVTransferReceiver {
    public let engine: DecodeEngine
    public let tokenizer: Tokenizer
    public let identity: KVCompatibilityIdentity
    /// Most tokens generated per request, whatever the request's own `maxTokens` says.
    public let maxTokensLimit: Int
    public let events: AsyncStream<DecodeEvent>

    private let eventSink: AsyncStream<DecodeEvent>.Continuation
    private let lock = NSLock()
    private let generation = DispatchQueue(label: "baton.decode-generation")

    /// - Parameters:
    ///   - identity: must describe `engine`'s model, its tokenizer and its cache layout.
    public init(
        engine: DecodeEngine, tokenizer: Tokenizer, identity: KVCompatibilityIdentity, maxTokensLimit: Int = 4096
    ) throws(WorkerError) {
        let layout = engine.cache.layout
        guard identity.layers == layout.layers, identity.kvHeads == layout.kvHeads, identity.headDim == layout.headDim,
            identity.blockSize == layout.blockSize, identity.elementType.byteWidth == layout.dataType.byteWidth
        else {
            throw WorkerError(.invalidArgument, "the KV identity does not describe the decode engine's cache layout")
        }
        self.engine = engine
        self.tokenizer = tokenizer
        self.identity = identity
        self.maxTokensLimit = maxTokensLimit
        (events, eventSink) = AsyncStream.makeStream()
    }

    /// Ends `events` (after the last queued generation).
    public func finishEvents() {
        generation.async { [eventSink] in eventSink.finish() }
    }

    /// Runs `body` with the cache and engine to itself.
    func locked<R>(_ body: () throws(InferenceError) -> R) throws(InferenceError) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    public func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        let differences = identity.differences(from: request.identity)
        guard differences.isEmpty else {
            throw KVTransportError(.incompatible, "request \(request.requestID): " + differences.joined(separator: "; "))
        }
        guard request.tokenCount >= 1, request.tokenCount < engine.maxContext else {
            throw KVTransportError(
                .refused, "request \(request.requestID): \(request.tokenCount) prompt tokens do not fit the context of \(engine.maxContext)")
        }
        let cache = engine.cache
        let descriptor = KVSequenceDescriptor(layout: cache.layout, tokenCount: request.tokenCount)
        guard descriptor.layerByteCount == request.layerByteCount else {
            throw KVTransportError(
                .incompatible, "request \(request.requestID): \(request.layerByteCount) bytes per layer, expected \(descriptor.layerByteCount)")
        }
        do {
            let sequence = try locked { () throws(InferenceError) in try cache.importSequence(descriptor) }
            return Inbound(owner: self, request: request, sequence: sequence, transport: transport)
        } catch {
            throw KVTransportError(.refused, "request \(request.requestID): no room in the KV cache (\(error.message))", cause: error)
        }
    }

    /// One sequence being received: owns its blocks until generation takes them over or the transfer fails.
    final class Inbound: KVInboundTransfer, @unchecked Sendable {
        let owner: DecodeKVReceiver
        let request: KVTransferRequest
        let sequence: SequenceID
        let transport: KVTransportKind
        /// Set once generation owns the sequence; guarded by `owner.lock`.
        private var handedOver = false

        init(owner: DecodeKVReceiver, request: KVTransferRequest, sequence: SequenceID, transport: KVTransportKind) {
            self.owner = owner
            self.request = request
            self.sequence = sequence
            self.transport = transport
        }

        func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws {
            let cache = owner.engine.cache, sequence = self.sequence
            try owner.locked { () throws(InferenceError) in try cache.importLayer(sequence, layer: layer, bytes: bytes) }
        }

        /// The layer's blocks in the cache: the HTTP/2 transports write each chunk straight there (no staging
        /// copy). Nothing reads these blocks before the transfer completes, and a failure frees them.
        func landingZone(forLayer layer: Int) -> KVLandingZone? {
            let cache = owner.engine.cache, sequence = self.sequence
            guard let slices = try? owner.locked({ () throws(InferenceError) in try cache.importTarget(sequence, layer: layer) }) else {
                return nil  // `receiveLayer` then reports the error
            }
            return KVLandingZone(regions: slices.map { UnsafeMutableRawBufferPointer(start: $0.pointer, count: $0.byteCount) })
        }

        func layerLanded(_ layer: Int) async throws {}

        func complete(_ completion: KVTransferCompletion) async throws {
            guard completion.tokenCount == request.tokenCount else {
                throw KVTransportError(
                    .protocolViolation,
                    "completion of \(request.requestID) says \(completion.tokenCount) tokens, the transfer had \(request.tokenCount)")
            }
            let vocabulary = owner.engine.model.configuration.vocabularySize
            let restored: (Sampler, SamplingParameters)
            do {
                restored = try SamplingHandoff.restore(completion.samplingState, firstToken: completion.firstToken, vocabularySize: vocabulary)
            } catch {
                throw KVTransportError(.protocolViolation, "completion of \(request.requestID): \(error.message)", cause: error)
            }
            owner.lock.withLock { handedOver = true }
            owner.eventSink.yield(.firstToken(requestID: request.requestID, token: completion.firstToken))
            let owner = self.owner, request = self.request, sequence = self.sequence, transport = self.transport
            owner.generation.async {
                owner.generate(
                    request: request, sequence: sequence, transport: transport, firstToken: completion.firstToken,
                    sampler: restored.0, parameters: restored.1)
            }
        }

        func fail(_ error: KVTransportError) async {
            let freed: Bool = owner.lock.withLock {
                guard !handedOver else { return false }
                owner.engine.cache.free(sequence)
                return true
            }
            if freed {
                owner.eventSink.yield(
                    .failed(requestID: request.requestID, error: WorkerError(.transfer, "transfer failed: \(error.message)", cause: error)))
            }
        }
    }

    /// The token loop of `Generator.generate`, from the first token on, for a sequence whose prompt KV is in the
    /// cache. Frees the sequence when done.
    func generate(
        request: KVTransferRequest, sequence: SequenceID, transport: KVTransportKind, firstToken: Int32,
        sampler: Sampler, parameters: SamplingParameters
    ) {
        var sampler = sampler
        let promptTokens = request.tokenCount
        var progress = CompletionProgress(
            tokenizer: tokenizer, parameters: parameters,
            maxTokens: min(parameters.maxTokens ?? Int.max, maxTokensLimit, engine.maxContext - promptTokens))
        var token = firstToken
        // Freed before the outcome is reported, so a caller seeing it finds the blocks back in the pool.
        var sequenceHeld = true
        func release() {
            guard sequenceHeld else { return }
            sequenceHeld = false
            lock.withLock { engine.cache.free(sequence) }
        }
        defer { release() }
        do {
            while !progress.isFinished {
                _ = progress.accept(token)
                if progress.isFinished { break }
                let engine = self.engine, input = DecodeInput(sequence: sequence, token: token)
                token = try locked { () throws(InferenceError) in
                    try engine.step([input])
                    return engine.withLogits(row: 0) { sampler.sample(logits: $0).id }
                }
            }
        } catch {
            release()
            eventSink.yield(
                .failed(requestID: request.requestID, error: WorkerError(.inference, "decoding \(request.requestID) failed", cause: error)))
            return
        }
        release()
        _ = progress.finish()
        let text = progress.text, tokens = progress.tokens, finish = progress.finishReason ?? .length
        eventSink.yield(
            .finished(
                DecodedSequence(
                    requestID: request.requestID, promptTokens: promptTokens, tokens: tokens, text: text,
                    finishReason: finish, seed: parameters.seed ?? 0, transport: transport)))
    }
}
