import ClusterProtocol
import Foundation
import Generation
import RPC
import Logging
import Metrics
import Synchronization

/// The router's backend in a cluster: for each generation it asks placement for a prefill/decode pair, opens the
/// generation on the decode worker (which reserves room), has the prefill worker stream the prompt's KV and last
/// logits to it, and hands the decode worker's tokens to the router. Short prompts (placement's `decode_only`
/// mode) run entirely on the decode worker.
///
/// `generate` returns once the first token (or the end) is known, so that every failure before it — no worker,
/// overload, a worker that went away — reaches the client as a proper HTTP error rather than a broken stream.
/// A worker that refuses for a transient reason (draining, out of KV room, unreachable) is retried on another
/// choice, up to `attempts` times, before the request fails.
///
/// The stream it returns decodes the decode worker's messages as the consumer asks for them (no task between the
/// two). Cancelling it resets the decode stream and the prefill request; each worker then frees the KV.
public final class ClusterGenerationBackend: GenerationBackend {
    /// Settings with documented defaults.
    public struct Configuration: Sendable {
        /// Choices tried per request when workers refuse for transient reasons. Default 3.
        public var attempts = 3
        /// Longest silence on a decode stream (the worker sends keep-alives while it waits). Default 60 s.
        public var decodeIdleTimeout: Duration = .seconds(60)
        /// Prefill deadline: this much, plus `prefillPerTokenTimeout` per prompt token. Default 30 s.
        public var prefillBaseTimeout: Duration = .seconds(30)
        /// Default 20 ms per token (a slow core prefills 50 tokens/s).
        public var prefillPerTokenTimeout: Duration = .milliseconds(20)
        /// How long a health verdict is reused. Default 1 s.
        public var healthCacheInterval: Duration = .seconds(1)

        public init() {}
    }

    private let placement: PlacementClient
    private let workers: NodeClientPool
    private let configuration: Configuration
    private let metrics: any MetricsFactory
    private let logger: Logger
    private let healthCache = Mutex<(at: ContinuousClock.Instant, verdict: BackendHealth)?>(nil)

    /// - Parameters:
    ///   - workers: connections to workers (mutual TLS with the router's certificate).
    ///   - metrics: where the per-worker figures go (`baton router`: its Prometheus registry).
    public init(
        placement: PlacementClient, workers: NodeClientPool, configuration: Configuration = Configuration(),
        metrics: any MetricsFactory = MetricsSystem.factory, logger: Logger = Logger(label: "baton.router.cluster")
    ) {
        self.placement = placement
        self.workers = workers
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
    }

    public func health() async -> BackendHealth {
        if let cached = healthCache.withLock({ $0 }), cached.at.duration(to: .now) < configuration.healthCacheInterval {
            return cached.verdict
        }
        let verdict: BackendHealth
        do throws(ClusterError) {
            let status = try await placement.status()
            publishLoad(status)
            let serving = status.workers.filter { $0.status == "active" }
            if serving.contains(where: { $0.assignedRoles.contains(.decode) }) {
                verdict = .ready
            } else if serving.isEmpty {
                verdict = .unavailable(reason: "no worker has registered with placement yet")
            } else {
                verdict = .unavailable(reason: "no active worker may decode")
            }
        } catch {
            verdict = .unavailable(reason: error.message)
        }
        healthCache.withLock { $0 = (.now, verdict) }
        return verdict
    }

    /// Refreshes the health verdict and the workers' load gauges every `interval` until cancelled, so that
    /// `/metrics` shows current per-worker load even when nobody polls `/health`.
    public func refreshPeriodically(every interval: Duration = .seconds(5)) async {
        while !Task.isCancelled {
            healthCache.withLock { $0 = nil }
            _ = await health()
            try? await Task.sleep(for: interval)
        }
    }

    public func generate(_ state: GenerationState) async throws(GenerationError) -> GenerationStream {
        var lastError: GenerationError?
        for attempt in 1...max(1, configuration.attempts) {
            if Task.isCancelled { throw GenerationError(.cancelled, "the request was cancelled before it was placed") }
            let choice: ChooseResponse
            do {
                choice = try await placement.choose(promptTokens: state.request.prompt.count)
            } catch {
                throw Self.generationError(error)
            }
            do {
                return try await start(state, on: choice)
            } catch {
                lastError = error.error
                guard error.retryable, attempt < configuration.attempts else { throw error.error }
                logger.info("request \(state.request.id): \(error.error.message); choosing again (attempt \(attempt + 1))")
            }
        }
        throw lastError ?? GenerationError(.unavailable, "no worker could take the request")
    }

    /// A failed attempt on one choice of workers.
    private struct AttemptFailure: Error {
        var error: GenerationError
        /// Another choice of workers may succeed.
        var retryable: Bool
    }

    /// Opens `state` on the chosen decode worker, starts the prefill, and waits for the first output.
    private func start(_ state: GenerationState, on choice: ChooseResponse) async throws(AttemptFailure) -> GenerationStream {
        let request = state.request
        var open = Baton_V1_OpenDecodeRequest()
        open.state = state.proto
        open.prefillHere = choice.mode == .decodeOnly || choice.prefill == nil
        let decode = choice.decode
        let opened: NodeStreamResponse
        do {
            let client = try await workers.client(host: decode.address.host, port: decode.address.port)
            opened = try await client.stream(
                BatonProtocol.WorkerControl.openDecode, body: try open.serializedBytes(),
                idleTimeout: configuration.decodeIdleTimeout)
        } catch {
            throw AttemptFailure(
                error: GenerationError(.unavailable, "decode worker \(decode.name) is unreachable: \(error)", cause: error),
                retryable: true)
        }
        guard opened.status == 200 else {
            throw Self.refusal(status: opened.status, body: opened.body, worker: decode.name)
        }

        let generation = RemoteGeneration(
            requestID: request.id, decodeWorker: decode.name, prefillWorker: open.prefillHere ? nil : choice.prefill?.name,
            messages: opened.messages, cancelDecode: opened.cancel)
        // The first event tells whether the worker took the request (it may wait for room first).
        do throws(GenerationError) {
            switch try await generation.nextMessage()?.event {
            case .opened: break
            case .failure(let failure): throw RemoteGeneration.error(failure, worker: decode.name)
            default: throw GenerationError(.failed, "decode worker \(decode.name) answered out of order")
            }
        } catch {
            generation.cancel(reason: "the decode worker did not open the request")
            throw AttemptFailure(error: error, retryable: Self.isTransient(error))
        }
        countWorkerRequest(worker: decode.name, role: "decode")
        if !open.prefillHere, let prefill = choice.prefill {
            countWorkerRequest(worker: prefill.name, role: "prefill")
            generation.startPrefill {
                await self.submitPrefill(request, to: prefill, decode: decode)
            }
        }
        // Wait for the first token (or the end) before answering, so early failures get a proper status.
        do {
            try await generation.readHead()
        } catch {
            generation.cancel(reason: "the generation failed before its first token")
            throw AttemptFailure(error: error, retryable: false)
        }
        return GenerationStream(
            next: { try await generation.next() }, cancel: { reason in generation.cancel(reason: reason) })
    }

    /// Runs the prompt on the prefill worker; its KV goes straight to the decode worker. Returns why it failed,
    /// or nil when it succeeded or was cancelled.
    private func submitPrefill(
        _ request: GenerationRequest, to prefill: WorkerEndpoint, decode: WorkerEndpoint
    ) async -> GenerationError? {
        var submit = Baton_V1_SubmitPrefillRequest()
        submit.requestID = request.id
        submit.promptTokens = request.prompt
        var address = Baton_V1_WorkerAddress()
        address.host = decode.address.host
        address.port = UInt32(clamping: decode.address.port)
        address.hostID = decode.address.hostID
        submit.decodeWorker = address
        let timeout = configuration.prefillBaseTimeout + configuration.prefillPerTokenTimeout * request.prompt.count
        submit.deadlineMs = UInt32(clamping: Int(timeout.components.seconds) * 1000)
        do {
            let client = try await workers.client(host: prefill.address.host, port: prefill.address.port)
            let response = try await client.call(
                BatonProtocol.WorkerControl.submitPrefill, body: try submit.serializedBytes(),
                contentType: "application/x-protobuf", timeout: timeout)
            if Task.isCancelled { return nil }
            guard response.status == 200 else {
                return Self.refusal(status: response.status, body: response.body, worker: prefill.name).error
            }
            if let result = try? Baton_V1_SubmitPrefillResponse(serializedBytes: response.body) {
                logger.debug("request \(request.id): prefill \(result.prefillMs) ms, KV \(result.kvBytesSent) bytes in \(result.transferMs) ms over \(result.transport.name)")
            }
            return nil
        } catch {
            if Task.isCancelled { return nil }
            return GenerationError(.failed, "prefill worker \(prefill.name) failed: \(error)", cause: error)
        }
    }

    // MARK: - Mapping

    /// Whether another choice of workers may succeed after `error` on this one.
    private static func isTransient(_ error: GenerationError) -> Bool {
        error.code == .overloaded || error.code == .unavailable
    }

    /// A worker's non-200 answer (JSON `{"code", "message"}`).
    private static func refusal(status: Int, body: [UInt8], worker: String) -> AttemptFailure {
        struct Body: Decodable {
            var code: String?
            var message: String?
        }
        let parsed = try? JSONDecoder().decode(Body.self, from: Data(body))
        let text = String(decoding: body, as: UTF8.self)
        let message = "worker \(worker): " + (parsed?.message ?? (text.isEmpty ? "HTTP \(status)" : text))
        switch (status, parsed?.code ?? "") {
        case (_, "draining"), (503, _):
            return AttemptFailure(error: GenerationError(.unavailable, message), retryable: true)
        case (_, "no_room"), (429, _):
            return AttemptFailure(error: GenerationError(.overloaded, message, retryAfterSeconds: 1), retryable: true)
        case (400..<500, _):
            return AttemptFailure(error: GenerationError(.invalidArgument, message), retryable: false)
        default:
            return AttemptFailure(error: GenerationError(.failed, message), retryable: false)
        }
    }

    static func generationError(_ error: ClusterError) -> GenerationError {
        switch error.code {
        case .overloaded:
            GenerationError(
                .overloaded, error.message, retryAfterSeconds: Int((error.retryAfterSeconds ?? 1).rounded(.up)), cause: error)
        case .unavailable: GenerationError(.unavailable, error.message, cause: error)
        case .timeout: GenerationError(.timeout, error.message, cause: error)
        case .invalidArgument, .rejected: GenerationError(.invalidArgument, error.message, cause: error)
        default: GenerationError(.failed, error.message, cause: error)
        }
    }

    // MARK: - Metrics (swift-metrics: the executable chooses where they go)

    private func countWorkerRequest(worker: String, role: String) {
        Counter(label: "baton_router_worker_requests_total", dimensions: [("worker", worker), ("role", role)], factory: metrics)
            .increment()
    }

    private func publishLoad(_ status: ClusterStatus) {
        for worker in status.workers {
            let dimensions = [("worker", worker.name), ("role", worker.assignedRoles.map(\.rawValue).joined(separator: "+"))]
            Gauge(label: "baton_router_worker_queue_depth", dimensions: dimensions, factory: metrics).record(worker.load.queueDepth)
            Gauge(label: "baton_router_worker_active_sequences", dimensions: dimensions, factory: metrics)
                .record(worker.load.activeSequences)
            Gauge(label: "baton_router_worker_free_kv_blocks", dimensions: dimensions, factory: metrics)
                .record(worker.load.freeKVBlocks)
        }
    }
}

/// One generation running on a decode worker, read by one consumer: decodes the worker's messages on demand.
private final class RemoteGeneration: @unchecked Sendable {
    let requestID: String
    let decodeWorker: String
    /// Nil when the decode worker runs the prompt itself.
    let prefillWorker: String?
    private var messages: AsyncThrowingStream<[UInt8], any Error>.Iterator
    private let cancelDecode: @Sendable () -> Void
    /// The first output, read before `generate` returned.
    private var head: GenerationEvent?
    private var finished = false
    /// Why the prefill failed: it resets the decode stream, and this is what the consumer hears.
    private let prefillFailure = Mutex<GenerationError?>(nil)
    private let prefill = Mutex<Task<Void, Never>?>(nil)

    init(
        requestID: String, decodeWorker: String, prefillWorker: String?, messages: AsyncThrowingStream<[UInt8], any Error>,
        cancelDecode: @escaping @Sendable () -> Void
    ) {
        self.requestID = requestID
        self.decodeWorker = decodeWorker
        self.prefillWorker = prefillWorker
        self.messages = messages.makeAsyncIterator()
        self.cancelDecode = cancelDecode
    }

    /// Runs the prefill; a failure ends the decode stream at once (its worker would otherwise wait for a
    /// transfer that never comes) and is what the consumer hears.
    func startPrefill(_ run: @escaping @Sendable () async -> GenerationError?) {
        let task = Task { [self] in
            guard let failure = await run() else { return }
            prefillFailure.withLock { $0 = failure }
            cancelDecode()
        }
        prefill.withLock { $0 = task }
    }

    func cancel(reason: String) {
        cancelDecode()
        prefill.withLock { $0 }?.cancel()
    }

    /// The next worker message (keep-alives are skipped by the client), or nil at the end of the stream.
    func nextMessage() async throws(GenerationError) -> Baton_V1_DecodeEvent? {
        let bytes: [UInt8]?
        do { bytes = try await messages.next() } catch {
            throw failure(GenerationError(.failed, "decode worker \(decodeWorker): \(error)", cause: error))
        }
        guard let bytes else { return nil }
        do { return try Baton_V1_DecodeEvent(serializedBytes: bytes) } catch {
            throw GenerationError(.failed, "decode worker \(decodeWorker) sent an unreadable event", cause: error)
        }
    }

    /// Reads up to the first output (a token or the end) and keeps it for `next`.
    func readHead() async throws(GenerationError) {
        head = try await nextOutput()
    }

    /// The next event; nil once `finished` was read (the stream is over).
    func next() async throws(GenerationError) -> GenerationEvent? {
        guard !finished else { return nil }
        let event: GenerationEvent
        if let head {
            self.head = nil
            event = head
        } else {
            event = try await nextOutput()
        }
        if case .finished = event { finished = true }
        return event
    }

    private func nextOutput() async throws(GenerationError) -> GenerationEvent {
        while true {
            guard let message = try await nextMessage() else {
                throw failure(GenerationError(.failed, "decode worker \(decodeWorker) ended the generation without finishing it"))
            }
            switch message.event {
            case .token(let token):
                return .token(GeneratedToken(proto: token))
            case .finished(let finished):
                var handoff: KVHandoffSummary?
                if finished.transport != .unspecified {
                    handoff = KVHandoffSummary(
                        transport: finished.transport.name, bytes: Int(finished.kvBytes),
                        seconds: Double(finished.kvTransferMs) / 1000)
                }
                return .finished(
                    GenerationSummary(
                        reason: try FinishReason(proto: finished.reason), promptTokens: Int(finished.promptTokens),
                        completionTokens: Int(finished.completionTokens), handoff: handoff,
                        workers: ServingWorkers(prefill: prefillWorker, decode: decodeWorker)))
            case .failure(let failure):
                throw self.failure(Self.error(failure, worker: decodeWorker))
            case .opened:
                continue
            case nil:
                throw GenerationError(.failed, "decode worker \(decodeWorker) sent an empty event")
            }
        }
    }

    /// A failed prefill explains a broken decode stream better than the stream's own error.
    private func failure(_ error: GenerationError) -> GenerationError {
        prefillFailure.withLock { $0 } ?? error
    }

    static func error(_ failure: Baton_V1_DecodeFailure, worker: String) -> GenerationError {
        let message = "decode worker \(worker): \(failure.message)"
        return switch failure.code {
        case .noRoom: GenerationError(.overloaded, message, retryAfterSeconds: 1)
        case .draining: GenerationError(.unavailable, message)
        case .invalidArgument: GenerationError(.invalidArgument, message)
        case .timeout: GenerationError(.timeout, message)
        case .cancelled: GenerationError(.cancelled, message)
        case .transferFailed: GenerationError(.kvTransferFailed, message)
        default: GenerationError(.failed, message)
        }
    }
}
