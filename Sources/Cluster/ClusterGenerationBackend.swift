import ClusterProtocol
import Foundation
import KVTransport
import Logging
import Router
import Synchronization

/// The router's backend in a cluster: for each request it asks placement for a prefill/decode pair, opens
/// the generation on the decode worker, has the prefill worker stream the prompt's KV to it, and relays
/// the decode worker's tokens. Short prompts (placement's `decode_only` mode) run entirely on the decode
/// worker.
///
/// `generate` returns once the first token (or the end) is known, so that every failure before it — no
/// worker, overload, a worker that went away — reaches the client as a proper HTTP error rather than a broken
/// stream. A worker that refuses for a transient reason (draining, out of KV room, unreachable) is retried on
/// another choice, up to `attempts` times, before the request fails.
///
/// Cancelling the consumer (client gone, stop string, timeout) resets the decode stream and the prefill
/// request; each worker then frees the request's KV.
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
    private let metrics: RouterMetrics?
    private let logger: Logger
    private let healthCache = Mutex<(at: ContinuousClock.Instant, verdict: BackendHealth)?>(nil)

    /// - Parameters:
    ///   - workers: connections to workers (mutual TLS with the router's certificate).
    ///   - metrics: receives KV hand-off figures and workers' load, when given.
    public init(
        placement: PlacementClient, workers: NodeClientPool, configuration: Configuration = Configuration(),
        metrics: RouterMetrics? = nil, logger: Logger = Logger(label: "baton.router.cluster")
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

    public func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        var lastError: RouterError?
        for attempt in 1...max(1, configuration.attempts) {
            try Task.checkCancellation()
            let choice: ChooseResponse
            do {
                choice = try await placement.choose(promptTokens: request.promptTokens.count)
            } catch {
                throw Self.routerError(error)
            }
            do {
                return try await run(request, on: choice)
            } catch let failure as AttemptFailure {
                lastError = failure.error
                guard failure.retryable, attempt < configuration.attempts else { throw failure.error }
                logger.info("request \(request.id): \(failure.error.message); choosing again (attempt \(attempt + 1))")
            }
        }
        throw lastError ?? RouterError(.noWorkerAvailable, "no worker could take the request")
    }

    /// A failed attempt on one choice of workers.
    private struct AttemptFailure: Error {
        var error: RouterError
        /// Another choice of workers may succeed.
        var retryable: Bool
    }

    private func run(_ request: GenerationRequest, on choice: ChooseResponse) async throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        var open = Baton_V1_OpenDecodeRequest()
        open.requestID = request.id
        open.promptTokens = request.promptTokens
        open.maxNewTokens = UInt32(clamping: request.maxTokens)
        open.sampling = Self.sampling(request)
        open.prefillHere = choice.mode == .decodeOnly || choice.prefill == nil
        let decode = choice.decode
        let opened: NodeStreamResponse
        do {
            let client = try await workers.client(host: decode.address.host, port: decode.address.port)
            opened = try await client.stream(
                BatonProtocol.WorkerControl.openDecode, body: try open.serializedBytes(),
                idleTimeout: configuration.decodeIdleTimeout)
        } catch let error as KVTransportError {
            throw AttemptFailure(
                error: RouterError(.noWorkerAvailable, "decode worker \(decode.name) is unreachable: \(error.message)", cause: error),
                retryable: true)
        }
        guard opened.status == 200 else {
            throw Self.refusal(status: opened.status, body: opened.body, worker: decode.name)
        }

        // The relay owns the decode stream from here; the first event tells whether the worker took the request.
        var iterator = opened.messages.makeAsyncIterator()
        let first = try await nextEvent(&iterator, worker: decode.name)
        guard case .opened = first.event else {
            throw Self.failure(first, worker: decode.name, beforeOpened: true)
        }

        metrics?.countWorkerRequest(worker: decode.name, role: "decode")
        if !open.prefillHere, let prefill = choice.prefill { metrics?.countWorkerRequest(worker: prefill.name, role: "prefill") }
        let (events, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        // A prefill failure resets the decode stream at once (its worker would otherwise wait for a transfer
        // that never comes) and is what the client hears, before or after the first token.
        let prefillFailure = Mutex<AttemptFailure?>(nil)
        let prefillTask: Task<Void, Never>?
        if !open.prefillHere, let prefill = choice.prefill {
            let cancelDecode = opened.cancel
            prefillTask = Task {
                guard let failure = await self.submitPrefill(request, to: prefill, decode: decode) else { return }
                prefillFailure.withLock { $0 = failure }
                continuation.finish(throwing: failure.error)
                cancelDecode()
            }
        } else {
            prefillTask = nil
        }

        // Wait for the first token (or the end) before answering, so early failures get a proper status.
        let head: DecodeFirst
        do {
            head = try await firstOutput(&iterator, worker: decode.name)
        } catch {
            // The prefill task records its failure before resetting the decode stream.
            if let failure = prefillFailure.withLock({ $0 }) { throw failure }
            prefillTask?.cancel()
            opened.cancel()
            if let failure = error as? AttemptFailure { throw failure }
            throw AttemptFailure(error: Self.routerError(error, worker: decode.name), retryable: false)
        }
        let relay = Task { [iterator] in
            var iterator = iterator
            await self.relay(head, rest: &iterator, request: request, decode: decode, to: continuation)
        }
        continuation.onTermination = { termination in
            relay.cancel()
            opened.cancel()
            // After a normal end the prefill request has completed; only an early end must stop it.
            if case .finished(nil) = termination { return }
            prefillTask?.cancel()
        }
        return events
    }

    private enum DecodeFirst {
        case token(Baton_V1_DecodeToken)
        case finished(Baton_V1_DecodeFinished)
    }

    private func nextEvent(
        _ iterator: inout AsyncThrowingStream<[UInt8], any Error>.AsyncIterator, worker: String
    ) async throws -> Baton_V1_DecodeEvent {
        let message: [UInt8]?
        do {
            message = try await iterator.next()
        } catch {
            throw AttemptFailure(error: Self.routerError(error, worker: worker), retryable: false)
        }
        guard let message else {
            throw AttemptFailure(
                error: RouterError(.backendFailure, "decode worker \(worker) ended the generation without finishing it"),
                retryable: false)
        }
        do {
            return try Baton_V1_DecodeEvent(serializedBytes: message)
        } catch {
            throw AttemptFailure(
                error: RouterError(.backendFailure, "decode worker \(worker) sent an unreadable event", cause: error),
                retryable: false)
        }
    }

    private func firstOutput(
        _ iterator: inout AsyncThrowingStream<[UInt8], any Error>.AsyncIterator, worker: String
    ) async throws -> DecodeFirst {
        while true {
            let event = try await nextEvent(&iterator, worker: worker)
            switch event.event {
            case .token(let token): return .token(token)
            case .finished(let finished): return .finished(finished)
            case .opened: continue
            case .failure, .none: throw Self.failure(event, worker: worker, beforeOpened: false)
            }
        }
    }

    private func relay(
        _ head: DecodeFirst, rest iterator: inout AsyncThrowingStream<[UInt8], any Error>.AsyncIterator,
        request: GenerationRequest, decode: WorkerEndpoint,
        to continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
    ) async {
        var next: DecodeFirst? = head
        do {
            while true {
                let current: DecodeFirst
                if let pending = next {
                    current = pending
                    next = nil
                } else {
                    let event = try await nextEvent(&iterator, worker: decode.name)
                    switch event.event {
                    case .token(let token): current = .token(token)
                    case .finished(let finished): current = .finished(finished)
                    case .opened: continue
                    case .failure, .none: throw Self.failure(event, worker: decode.name, beforeOpened: false)
                    }
                }
                switch current {
                case .token(let token):
                    continuation.yield(.token(GeneratedToken(
                        id: token.token, logprob: request.logprobs ? token.logprob : nil,
                        topLogprobs: token.topLogprobs.map { TokenLogprob(id: $0.token, logprob: $0.logprob) })))
                case .finished(let finished):
                    if finished.transport != .unspecified, finished.kvBytes > 0 {
                        metrics?.recordKVTransfer(
                            transport: Self.transportName(finished.transport), bytes: Int(finished.kvBytes),
                            duration: .milliseconds(Int(finished.kvTransferMs)))
                    }
                    continuation.yield(.finished(GenerationSummary(
                        reason: Self.reason(finished.reason), promptTokens: Int(finished.promptTokens),
                        completionTokens: Int(finished.completionTokens))))
                    continuation.finish()
                    return
                }
            }
        } catch let failure as AttemptFailure {
            continuation.finish(throwing: failure.error)
        } catch {
            continuation.finish(throwing: Self.routerError(error, worker: decode.name))
        }
    }

    /// Runs the prompt on the prefill worker; its KV goes straight to the decode worker. Returns why it failed,
    /// or nil when it succeeded or was cancelled.
    private func submitPrefill(
        _ request: GenerationRequest, to prefill: WorkerEndpoint, decode: WorkerEndpoint
    ) async -> AttemptFailure? {
        var submit = Baton_V1_SubmitPrefillRequest()
        submit.requestID = request.id
        submit.promptTokens = request.promptTokens
        submit.sampling = Self.sampling(request)
        var address = Baton_V1_WorkerAddress()
        address.host = decode.address.host
        address.port = UInt32(clamping: decode.address.port)
        address.hostID = decode.address.hostID
        submit.decodeWorker = address
        let timeout = configuration.prefillBaseTimeout + configuration.prefillPerTokenTimeout * request.promptTokens.count
        submit.deadlineMs = UInt32(clamping: Int(timeout.components.seconds) * 1000)
        do {
            let client = try await workers.client(host: prefill.address.host, port: prefill.address.port)
            let response = try await client.call(
                BatonProtocol.WorkerControl.submitPrefill, body: try submit.serializedBytes(),
                contentType: "application/x-protobuf", timeout: timeout)
            if Task.isCancelled { return nil }
            guard response.status == 200 else {
                return Self.refusal(status: response.status, body: response.body, worker: prefill.name)
            }
            if let result = try? Baton_V1_SubmitPrefillResponse(serializedBytes: response.body) {
                logger.debug("request \(request.id): prefill \(result.prefillMs) ms, KV \(result.kvBytesSent) bytes in \(result.transferMs) ms over \(Self.transportName(result.transport))")
            }
            return nil
        } catch {
            if Task.isCancelled { return nil }
            // Unreachable before anything ran: another pair may do.
            let unreachable = (error as? KVTransportError)?.code == .connectionFailed
            return AttemptFailure(
                error: RouterError(.backendFailure, "prefill worker \(prefill.name) failed: \(error)", cause: error),
                retryable: unreachable)
        }
    }

    // MARK: - Mapping

    static func sampling(_ request: GenerationRequest) -> Baton_V1_SamplingParameters {
        var sampling = Baton_V1_SamplingParameters()
        sampling.temperature = request.sampling.temperature
        sampling.topP = request.sampling.topP
        if let seed = request.sampling.seed {
            sampling.hasSeed_p = true
            sampling.seed = seed
        }
        sampling.presencePenalty = request.sampling.presencePenalty
        sampling.frequencyPenalty = request.sampling.frequencyPenalty
        sampling.logitBias = request.sampling.logitBias
        sampling.logprobs = request.logprobs
        sampling.topLogprobs = UInt32(clamping: request.topLogprobs)
        return sampling
    }

    static func reason(_ reason: Baton_V1_DecodeFinished.Reason) -> GenerationFinishReason {
        switch reason {
        case .maxTokens: .maxTokens
        case .contextFull: .contextFull
        default: .endOfGeneration
        }
    }

    static func transportName(_ kind: Baton_V1_TransportKind) -> String {
        switch kind {
        case .tlsHTTP2: "tls"
        case .plaintextHTTP2: "plaintext"
        case .sharedMemory: "shm"
        case .rdma: "rdma"
        default: "none"
        }
    }

    /// A worker's non-200 answer (JSON `{"code", "message"}`).
    private static func refusal(status: Int, body: [UInt8], worker: String) -> AttemptFailure {
        struct Body: Decodable {
            var code: String?
            var message: String?
        }
        let parsed = try? JSONDecoder().decode(Body.self, from: Data(body))
        let message = "worker \(worker): " + (parsed?.message ?? (String(decoding: body, as: UTF8.self).isEmpty ? "HTTP \(status)" : String(decoding: body, as: UTF8.self)))
        switch (status, parsed?.code ?? "") {
        case (_, "draining"), (503, _):
            return AttemptFailure(error: RouterError(.noWorkerAvailable, message), retryable: true)
        case (_, "no_room"), (429, _):
            return AttemptFailure(error: RouterError(.overloaded, message, retryAfterSeconds: 1), retryable: true)
        case (400..<500, _):
            return AttemptFailure(error: RouterError(.invalidParameter, message), retryable: false)
        default:
            return AttemptFailure(error: RouterError(.backendFailure, message), retryable: false)
        }
    }

    /// A `failure` event (or anything else where `opened` was due).
    private static func failure(_ event: Baton_V1_DecodeEvent, worker: String, beforeOpened: Bool) -> AttemptFailure {
        guard case .failure(let failure) = event.event else {
            return AttemptFailure(
                error: RouterError(.backendFailure, "decode worker \(worker) answered out of order"), retryable: false)
        }
        let message = "decode worker \(worker): \(failure.message)"
        switch failure.code {
        case .noRoom: return AttemptFailure(error: RouterError(.overloaded, message, retryAfterSeconds: 1), retryable: beforeOpened)
        case .draining: return AttemptFailure(error: RouterError(.noWorkerAvailable, message), retryable: beforeOpened)
        case .invalidArgument: return AttemptFailure(error: RouterError(.invalidParameter, message), retryable: false)
        case .timeout: return AttemptFailure(error: RouterError(.timeout, message), retryable: false)
        default: return AttemptFailure(error: RouterError(.backendFailure, message), retryable: false)
        }
    }

    static func routerError(_ error: ClusterError) -> RouterError {
        switch error.code {
        case .overloaded:
            return RouterError(
                .overloaded, error.message, retryAfterSeconds: Int((error.retryAfterSeconds ?? 1).rounded(.up)), cause: error)
        case .unavailable, .timeout:
            return RouterError(.noWorkerAvailable, error.message, cause: error)
        default:
            return RouterError(.backendFailure, error.message, cause: error)
        }
    }

    private static func routerError(_ error: any Error, worker: String) -> RouterError {
        if let error = error as? RouterError { return error }
        if let error = error as? KVTransportError {
            if error.code == .timeout {
                return RouterError(.timeout, "decode worker \(worker) went silent: \(error.message)", cause: error)
            }
            return RouterError(.backendFailure, "decode worker \(worker): \(error.message)", cause: error)
        }
        return RouterError(.backendFailure, "decode worker \(worker): \(error)")
    }

    private func publishLoad(_ status: ClusterStatus) {
        guard let metrics else { return }
        for worker in status.workers {
            metrics.setWorkerLoad(
                worker: worker.name, role: worker.assignedRoles.map(\.rawValue).joined(separator: "+"),
                queueDepth: worker.load.queueDepth, activeSequences: worker.load.activeSequences,
                freeKVBlocks: worker.load.freeKVBlocks)
        }
    }
}
