import ClusterProtocol
import Foundation
import Generation
import RPC
import Logging
import Metrics
import Placement
import Synchronization

/// The router's backend in a cluster: for each generation it chooses a prefill/decode pair from the membership
/// snapshot placement pushes (`PlacementWatch`; placement is off the request path), waits in the router's queue
/// when every worker is at capacity, opens the
/// generation on the decode worker (which reserves room), has the prefill worker stream the prompt's KV and last
/// logits to it, and hands the decode worker's tokens to the router. Short prompts (placement's `decode_only`
/// mode) run entirely on the decode worker.
///
/// `generate` returns once the first token (or the end) is known, so that every failure before it that no other
/// worker can get past (an invalid request, every worker overloaded) reaches the client as a proper HTTP error
/// rather than a broken stream. A worker that refuses for a transient reason (draining, out of KV room,
/// unreachable) is retried on another choice, up to `attempts` times.
///
/// **Requests resume anywhere.** The router keeps each generation's `GenerationState` as the client received it
/// (every token handed on, and the generator's state after the last of them). When its decode worker's stream
/// breaks, stays silent past `decodeIdleTimeout` or reports a failure, or its prefill worker or KV transfer fails,
/// the state is opened on other workers (those that failed it left out of placement's choice), which rebuild the KV
/// of prompt + generated tokens on the path the first run used and sample on: the client's stream continues with
/// exactly the tokens an undisturbed run would have produced. At most the policy's `resume.max_migrations` times
/// per request; each migration is one warning log line and counts in `baton_router_migrations_total{reason}`.
///
/// **Drains move work.** A decode worker told to stop (SIGTERM) pauses each generation and offers it (`moving`):
/// the router opens it on another decode worker with room, which takes the KV of prompt + generated tokens straight
/// from the draining one over the KV transport and samples on from the state — nothing is computed again, and the
/// client's stream goes on with the same tokens. With no room elsewhere (or a move that fails) it finishes where it
/// was. One log line per moved generation; `baton_router_moves_total{outcome}` and
/// `baton_router_moved_kv_bytes_total`.
///
/// The stream it returns decodes the decode worker's messages as the consumer asks for them (no task between the
/// two). Cancelling it resets the decode stream and the prefill request; each worker then frees the KV.
public final class ClusterGenerationBackend: GenerationBackend {
    /// Settings with documented defaults.
    public struct Configuration: Sendable {
        /// Choices tried per placement when workers refuse for transient reasons. Default 3.
        public var attempts = 3
        /// Longest silence on a decode stream; past it the worker counts as failed and the request moves. The
        /// worker sends a keep-alive every second while it has nothing else to say. Default 10 s.
        public var decodeIdleTimeout: Duration = .seconds(10)
        /// Once a prompt's KV transfer started, the decode worker's longest wait for each next layer: this, plus
        /// `kvProgressPerTokenTimeout` per prompt token. Defaults 10 s and 5 ms.
        public var kvProgressBaseTimeout: Duration = .seconds(10)
        public var kvProgressPerTokenTimeout: Duration = .milliseconds(5)
        /// Longest wait for each next token once the first arrived; a decode worker that keeps its stream alive
        /// but makes no progress past it counts as failed. (The first token's bound is the prefill's plus the KV
        /// progress bound.) Default 30 s.
        public var tokenTimeout: Duration = .seconds(30)
        /// Prefill deadline: this much, plus `prefillPerTokenTimeout` per prompt token. Default 30 s.
        public var prefillBaseTimeout: Duration = .seconds(30)
        /// Default 20 ms per token (a slow core prefills 50 tokens/s).
        public var prefillPerTokenTimeout: Duration = .milliseconds(20)
        /// How long a request waits for the router's first membership snapshot (router start-up). Default 10 s.
        public var firstSnapshotWait: Duration = .seconds(10)

        public init() {}
    }

    private let placement: PlacementClient
    private let workers: NodeClientPool
    private let configuration: Configuration
    private let metrics: any MetricsFactory
    private let logger: Logger
    /// The cluster as placement last pushed it: requests are placed here, locally.
    private let watch: PlacementWatch
    /// Requests waiting for a worker with room (`admission.policy: queue`).
    private let queue: AdmissionQueue

    /// - Parameters:
    ///   - workers: connections to workers (mutual TLS with the router's certificate).
    ///   - metrics: where the per-worker figures go (`baton router`: its Prometheus registry).
    /// Call `run` to keep the membership snapshot current; requests wait (bounded) for the first one.
    public init(
        placement: PlacementClient, workers: NodeClientPool, configuration: Configuration = Configuration(),
        metrics: any MetricsFactory = MetricsSystem.factory, logger: Logger = Logger(label: "baton.router.cluster")
    ) {
        self.placement = placement
        self.workers = workers
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        let queue = AdmissionQueue()
        self.queue = queue
        self.watch = PlacementWatch(placement: placement, metrics: metrics, logger: logger, onChange: { queue.signal() })
    }

    /// Keeps the membership snapshot current (placement's watch stream, reconnecting while it is down) and the
    /// snapshot-age gauge fresh, until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.watch.run() }
            group.addTask {
                while !Task.isCancelled {
                    self.watch.publishGauges()
                    Gauge(label: "baton_router_queue_waiting", dimensions: [], factory: self.metrics).record(self.queue.count)
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            await group.waitForAll()
        }
    }

    public func health() async -> BackendHealth {
        watch.health()
    }

    /// Whether a membership snapshot has arrived (tests wait for it).
    var hasSnapshot: Bool { watch.policy.hasSnapshot }

    /// Places `state` on workers chosen locally from the membership snapshot. When every worker is at capacity
    /// the request waits in the router's queue (first come, first served) under `admission.policy: queue`: 429
    /// only when `admission.max_waiting` requests already wait, 504 after `admission.max_wait_seconds`. Under
    /// `ttft_target` it is refused at once with 429. A worker that cannot be reached is avoided and another
    /// choice tried, up to `attempts` times.
    public func generate(_ state: GenerationState) async throws(GenerationError) -> GenerationStream {
        let (first, maxMigrations) = try await place(state, excluding: [])
        let generation = ResumableGeneration(
            backend: self, state: state, maxMigrations: maxMigrations, first: first)
        // Wait for the first token (or the end) before answering, so early failures get a proper status.
        do {
            try await generation.readHead()
        } catch {
            generation.cancel(reason: "the generation failed before its first token")
            throw error
        }
        return GenerationStream(
            next: { try await generation.next() }, cancel: { reason in generation.cancel(reason: reason) })
    }

    /// Chooses workers for `state` (never those in `excluding`) and opens it there; a transient refusal is tried
    /// on another choice, up to `attempts` choices. Returns the opened generation and the policy's migration budget.
    fileprivate func place(
        _ state: GenerationState, excluding: [String]
    ) async throws(GenerationError) -> (RemoteGeneration, maxMigrations: Int) {
        var excluded = excluding
        let arrived = ContinuousClock.now
        var ticket: UInt64?
        defer { if let ticket { queue.leave(ticket) } }
        var attempt = 0
        var lastError: GenerationError?
        while true {
            if Task.isCancelled { throw GenerationError(.cancelled, "the request was cancelled before it was placed") }
            let epoch = queue.epoch
            let (policy, hasSnapshot) = watch.policy
            let deadline = arrived + (hasSnapshot ? .milliseconds(Int(policy.admission.maxWaitSeconds * 1000)) : configuration.firstSnapshotWait)
            var waitReason: String?
            if queue.mayChoose(ticket) {
                let choice: (decision: Decision, policy: PlacementPolicy, endpoints: [String: WorkerAddress])
                do {
                    choice = try watch.choose(promptTokens: state.request.prompt.count, excluding: excluded)
                } catch {
                    throw GenerationError(.invalidArgument, error.message, cause: error)
                }
                switch choice.decision.admission {
                case .admit(let pair):
                    if let ticket { queue.leave(ticket) }
                    ticket = nil
                    guard let decodeAddress = choice.endpoints[pair.decode] else {
                        throw GenerationError(.unavailable, "worker \(pair.decode) has no known address; it must register again")
                    }
                    let prefill = pair.prefill.flatMap { name in choice.endpoints[name].map { WorkerEndpoint(name: name, address: $0) } }
                    let response = ChooseResponse(
                        mode: pair.prefill == nil ? .decodeOnly : .disaggregated, prefill: prefill,
                        decode: WorkerEndpoint(name: pair.decode, address: decodeAddress),
                        explanation: choice.decision.explainText(policy: choice.policy))
                    // A prompt long enough to be split, placed on a decode worker alone because no prefill worker is
                    // eligible now, runs on the prefill path there: as an undisturbed cluster would have run it, so a
                    // greedy or seeded reply does not depend on whether a prefill worker was up.
                    var placed = state
                    if pair.prefill == nil, placed.promptPath == nil,
                        placed.request.prompt.count >= choice.policy.disaggregation.minPromptTokens
                    {
                        placed.promptPath = .prefill
                    }
                    do {
                        let generation = try await start(
                            placed, on: response, prefillQueueWait: prefillQueueWait(placed.request, policy: choice.policy))
                        watch.release(pair)
                        return (generation, choice.policy.resume.maxMigrations)
                    } catch {
                        watch.release(pair)
                        lastError = error.error
                        if error.retryable, error.error.code == .overloaded, choice.policy.admission.policy == .queue {
                            // The worker had no room after all: wait for one that has, like any request beyond capacity.
                            waitReason = error.error.message
                        } else {
                            // Unreachable or draining: this router avoids it until placement reports it alive again,
                            // and this request does not go back to it.
                            if let worker = error.leaveOut {
                                watch.markFailed(worker, reason: error.error.message)
                                if !excluded.contains(worker) { excluded.append(worker) }
                            }
                            attempt += 1
                            guard error.retryable, attempt < configuration.attempts else { throw error.error }
                            logger.info("request \(state.request.id): \(error.error.message); choosing again (attempt \(attempt + 1))")
                            continue
                        }
                    }
                case .reject(let reason, let retryAfter):
                    guard choice.policy.admission.policy == .queue else {
                        throw GenerationError(.overloaded, reason, retryAfterSeconds: Int(retryAfter.rounded(.up)))
                    }
                    waitReason = reason
                case .unavailable(let reason):
                    // Every eligible worker failed this request before (a cut link, then a kill elsewhere): the one
                    // that failed it first may well be back, so it is tried again rather than failing the client.
                    // The one that failed last stays left out; the migration budget still bounds the moves.
                    if hasSnapshot, excluded.count > 1 {
                        let again = excluded.removeFirst()
                        logger.info("request \(state.request.id): \(reason); trying \(again), which failed it earlier, again")
                        continue
                    }
                    // Before the first snapshot nothing is known yet: wait for it (bounded) rather than refuse.
                    guard !hasSnapshot else { throw lastError ?? GenerationError(.unavailable, reason) }
                    waitReason = reason
                }
            }
            if ticket == nil {
                let limit = hasSnapshot ? policy.admission.maxWaiting : Int.max
                guard let joined = queue.join(limit: limit) else {
                    throw GenerationError(
                        .overloaded,
                        "every worker is at capacity and \(limit) requests already wait at this router (admission.max_waiting)"
                            + (waitReason.map { ": \($0)" } ?? ""),
                        retryAfterSeconds: max(1, Int(policy.slo.retryAfterSeconds.rounded(.up))))
                }
                ticket = joined
                logger.debug("request \(state.request.id) waits for room: \(waitReason ?? "others are ahead")")
            }
            guard ContinuousClock.now < deadline else {
                let waited = arrived.duration(to: .now) / .seconds(1)
                if !hasSnapshot {
                    throw GenerationError(.unavailable, "no membership snapshot from placement at \(placement.host):\(placement.port) after \(String(format: "%.1f", waited)) s")
                }
                throw GenerationError(
                    .timeout,
                    "waited \(String(format: "%.1f", waited)) s for a worker with room (admission.max_wait_seconds \(ConfigNumber.text(policy.admission.maxWaitSeconds)))"
                        + (waitReason.map { ": \($0)" } ?? ""))
            }
            await queue.sleep(after: epoch, until: deadline)
        }
    }

    /// A failed attempt on one choice of workers.
    private struct AttemptFailure: Error {
        var error: GenerationError
        /// Another choice of workers may succeed.
        var retryable: Bool
        /// The worker to leave out of the next choice (unreachable or draining).
        var leaveOut: String?
    }

    /// Opens `state` on the chosen decode worker and, once it answered `opened`, starts the prefill. A state whose
    /// prompt ran through decode steps before is continued the same way (prompt run on the decode worker).
    /// `prefillQueueWait` bounds the prompt's wait in the prefill worker's queue, which the prefill deadline and the
    /// bounds that depend on it leave out: waiting behind other prompts is not failing.
    private func start(
        _ state: GenerationState, on choice: ChooseResponse, prefillQueueWait: Duration
    ) async throws(AttemptFailure) -> RemoteGeneration {
        let request = state.request
        var open = Baton_V1_OpenDecodeRequest()
        open.state = state.proto
        open.prefillHere = choice.mode == .decodeOnly || choice.prefill == nil || state.promptPath == .decode
        if !open.prefillHere {
            // The reservation waits for the prefill to start as long as the prefill worker may take (its queue
            // included), then for each layer within a bound that grows with the prompt.
            open.transferTimeoutMs = Self.milliseconds(prefillQueueWait + prefillTimeout(request))
            open.kvProgressTimeoutMs = Self.milliseconds(kvProgressTimeout(request))
        }
        // The decode worker takes this request's KV from that prefill worker only.
        if !open.prefillHere, let prefill = choice.prefill { open.prefillWorker = prefill.name }
        // When that worker drains, this router moves the generation away with its KV (see `move`).
        open.movable = true
        let decode = choice.decode
        let prefill = open.prefillHere ? nil : choice.prefill
        let generation = try await openDecode(
            open, on: decode, prefillWorker: prefill?.name,
            firstTokenWithin: (open.prefillHere ? .zero : prefillQueueWait) + prefillTimeout(request)
                + kvProgressTimeout(request))
        countWorkerRequest(worker: decode.name, role: "decode")
        if let prefill {
            countWorkerRequest(worker: prefill.name, role: "prefill")
            let decodeHolds = generation.decodeCachedTokens
            generation.startPrefill {
                await self.submitPrefill(
                    request, to: prefill, decode: decode, queueWait: prefillQueueWait, decodeHolds: decodeHolds)
            }
        }
        return generation
    }

    /// Opens `open` on `decode` and waits for its `opened` (it may wait for room first); from then on its first token
    /// is due within `firstTokenWithin`. A refusal, or a failure before `opened`, is an `AttemptFailure`.
    private func openDecode(
        _ open: Baton_V1_OpenDecodeRequest, on decode: WorkerEndpoint, prefillWorker: String?, firstTokenWithin: Duration
    ) async throws(AttemptFailure) -> RemoteGeneration {
        let opened: NodeStreamResponse
        do {
            let client = try await workers.client(
                host: decode.address.host, port: decode.address.port, expecting: .node(decode.name, as: .decode))
            opened = try await client.stream(
                BatonProtocol.WorkerControl.openDecode, body: try open.serializedBytes(),
                idleTimeout: configuration.decodeIdleTimeout)
        } catch {
            throw AttemptFailure(
                error: GenerationError(.unavailable, "decode worker \(decode.name) is unreachable: \(error)", cause: error),
                retryable: true, leaveOut: decode.name)
        }
        guard opened.status == 200 else {
            throw Self.refusal(status: opened.status, body: opened.body, worker: decode.name)
        }
        let generation = RemoteGeneration(
            requestID: open.state.requestID, decode: decode, prefillWorker: prefillWorker, messages: opened.messages,
            cancelDecode: opened.cancel, tokenTimeout: configuration.tokenTimeout)
        // The first event tells whether the worker took the request (it may wait for room first).
        do throws(GenerationError) {
            switch try await generation.nextMessage()?.event {
            case .opened(let event):
                // The prompt positions the decode worker holds in its prefix cache: the prefill worker ships the rest.
                generation.decodeCachedTokens = Int(event.cachedPromptTokens)
                // Waiting for room was waiting; from here on the work must progress.
                generation.opened(promptPath: PromptPath(proto: event.promptPath), firstTokenWithin: firstTokenWithin)
            case .failure(let failure): throw RemoteGeneration.error(failure, worker: decode.name)
            default: throw GenerationError(.failed, "decode worker \(decode.name) answered out of order")
            }
        } catch {
            // Full, draining, failing or gone before it took the request: another decode worker may take it.
            generation.cancel(reason: "the decode worker did not open the request")
            throw AttemptFailure(error: error, retryable: GenerationMigration.isResumable(error), leaveOut: decode.name)
        }
        return generation
    }

    /// Moves `state` (as the client has it: exactly the tokens `remote`'s worker generated before it paused to
    /// drain) to another decode worker with room, KV and all: opens it there with `moved` (that worker reserves
    /// room and takes the KV from `remote`'s worker only), then has `remote`'s worker ship the KV (`MoveDecode`).
    /// Returns the generation on the new worker, or nil when it goes on where it is: no other worker has room now
    /// (the draining one is told to keep it), or the move failed (the draining worker then keeps it by itself).
    /// At most `bound`, the draining worker's offer.
    fileprivate func move(_ state: GenerationState, from remote: RemoteGeneration, within bound: Duration) async -> RemoteGeneration? {
        let started = ContinuousClock.now
        let source = remote.decode
        let requestID = remote.requestID
        let choice: (decision: Decision, policy: PlacementPolicy, endpoints: [String: WorkerAddress])
        do {
            choice = try watch.choose(promptTokens: state.request.prompt.count, excluding: [source.name])
        } catch {
            await keep(remote, because: error.message)
            return nil
        }
        let pair: WorkerPair
        switch choice.decision.admission {
        case .admit(let chosen): pair = chosen
        case .reject(let reason, _), .unavailable(let reason):
            await keep(remote, because: "no other decode worker has room now: \(reason)")
            return nil
        }
        defer { watch.release(pair) }
        guard let address = choice.endpoints[pair.decode] else {
            await keep(remote, because: "worker \(pair.decode) has no known address")
            return nil
        }
        let target = WorkerEndpoint(name: pair.decode, address: address)

        var moved = state
        moved.request.id = requestID
        var open = Baton_V1_OpenDecodeRequest()
        open.state = moved.proto
        open.moved = true
        open.movable = true
        open.prefillWorker = source.name
        open.transferTimeoutMs = Self.milliseconds(bound)
        open.kvProgressTimeoutMs = Self.milliseconds(bound)
        let next: RemoteGeneration
        do {
            next = try await openDecode(open, on: target, prefillWorker: nil, firstTokenWithin: bound + configuration.tokenTimeout)
        } catch {
            await keep(remote, because: error.error.message)
            return nil
        }

        var request = Baton_V1_MoveDecodeRequest()
        request.requestID = requestID
        request.decodeWorker = Self.wireAddress(target)
        let left = max(bound - started.duration(to: .now), .milliseconds(1))
        request.deadlineMs = Self.milliseconds(left)
        let failure: String
        do {
            let client = try await workers.client(
                host: source.address.host, port: source.address.port, expecting: .node(source.name, as: .decode))
            let response = try await client.call(
                BatonProtocol.WorkerControl.moveDecode, body: try request.serializedBytes(),
                contentType: "application/x-protobuf", timeout: left + .seconds(5))
            if response.status == 200, let result = try? Baton_V1_MoveDecodeResponse(serializedBytes: response.body), result.moved {
                let pause = started.duration(to: .now) / .milliseconds(1)
                logger.info(
                    "request \(state.request.id): moved from \(source.name) (draining) to \(target.name) after \(state.generated.count) tokens: KV of \(result.kvTokens) positions, \(result.kvBytesSent) bytes over \(result.transport.name) in \(result.transferMs) ms (\(Int(pause)) ms in all); nothing computed again")
                countMove("moved")
                Counter(label: "baton_router_moved_kv_bytes_total", factory: metrics).increment(by: Int(result.kvBytesSent))
                return next
            }
            failure = Self.refusal(status: response.status, body: response.body, worker: source.name).error.message
        } catch {
            failure = "\(error)"
        }
        // The draining worker goes on with it by itself when its shipment failed or its offer expired.
        next.cancel(reason: "the move from \(source.name) failed")
        logger.warning("request \(state.request.id): moving it from \(source.name) to \(target.name) failed: \(failure); it goes on at \(source.name)")
        countMove("failed")
        return nil
    }

    /// Tells a draining worker to go on with a generation it offered (best effort: past its offer it does anyway).
    private func keep(_ remote: RemoteGeneration, because reason: String) async {
        logger.info("request \(remote.requestID): stays on draining \(remote.decode.name): \(reason)")
        countMove("kept")
        var request = Baton_V1_MoveDecodeRequest()
        request.requestID = remote.requestID
        do {
            let client = try await workers.client(
                host: remote.decode.address.host, port: remote.decode.address.port,
                expecting: .node(remote.decode.name, as: .decode))
            _ = try await client.call(
                BatonProtocol.WorkerControl.moveDecode, body: try request.serializedBytes(),
                contentType: "application/x-protobuf", timeout: .seconds(5))
        } catch {
            logger.debug("request \(remote.requestID): telling \(remote.decode.name) to keep it failed: \(error)")
        }
    }

    /// How long a prompt may take to prefill and ship: `prefillBaseTimeout` plus `prefillPerTokenTimeout` per token.
    private func prefillTimeout(_ request: GenerationRequest) -> Duration {
        configuration.prefillBaseTimeout + configuration.prefillPerTokenTimeout * request.prompt.count
    }

    /// How long a prompt may wait in the prefill worker's queue before its first pass. A worker takes at most
    /// `slo.max_queue_depth` queued requests before it counts as at capacity, so the prompt waits behind at most that
    /// many; each is given this prompt's own prefill bound (prompts in one burst tend to be alike, and the base term
    /// covers short ones behind long ones), never more than a request may wait at the router. Long enough that a
    /// busy worker is not mistaken for a stuck one, short enough that a frozen one is given up within minutes.
    private func prefillQueueWait(_ request: GenerationRequest, policy: PlacementPolicy) -> Duration {
        let behind = prefillTimeout(request) * max(1, policy.slo.maxQueueDepth)
        return min(behind, .milliseconds(Int(policy.admission.maxWaitSeconds * 1000)))
    }

    private func kvProgressTimeout(_ request: GenerationRequest) -> Duration {
        configuration.kvProgressBaseTimeout + configuration.kvProgressPerTokenTimeout * request.prompt.count
    }

    private static func milliseconds(_ duration: Duration) -> UInt32 {
        UInt32(clamping: Int(duration / .milliseconds(1)))
    }

    /// Logs and counts one migration: one line per migration, naming the request and what failed.
    fileprivate func recordMigration(
        _ failure: GenerationMigration.Failure, state: GenerationState, number: Int, of budget: Int
    ) {
        logger.warning(
            "request \(state.request.id): \(failure.reason.rawValue): \(failure.error.message); resuming after \(state.generated.count) tokens on other workers (migration \(number) of \(budget), leaving out \(failure.worker))")
        Counter(label: "baton_router_migrations_total", dimensions: [("reason", failure.reason.rawValue)], factory: metrics)
            .increment()
        // What the move costs: the new workers run the prompt and every generated token again.
        Counter(label: "baton_router_migration_recomputed_tokens_total", factory: metrics)
            .increment(by: state.request.prompt.count + state.generated.count)
    }

    /// Runs the prompt on the prefill worker; its KV goes straight to the decode worker. Returns why it failed,
    /// or nil when it succeeded or was cancelled.
    private func submitPrefill(
        _ request: GenerationRequest, to prefill: WorkerEndpoint, decode: WorkerEndpoint, queueWait: Duration,
        decodeHolds: Int
    ) async -> GenerationError? {
        var submit = Baton_V1_SubmitPrefillRequest()
        submit.requestID = request.id
        submit.promptTokens = request.prompt
        submit.decodeWorker = Self.wireAddress(decode)
        submit.deadlineMs = Self.milliseconds(prefillTimeout(request))
        submit.queueTimeoutMs = Self.milliseconds(queueWait)
        // The worker's two bounds, one after the other, and a second for the answer to travel.
        let timeout = queueWait + prefillTimeout(request) + .seconds(1)
        submit.decodeCachedTokens = UInt32(clamping: decodeHolds)
        do {
            let client = try await workers.client(
                host: prefill.address.host, port: prefill.address.port, expecting: .node(prefill.name, as: .prefill))
            let response = try await client.call(
                BatonProtocol.WorkerControl.submitPrefill, body: try submit.serializedBytes(),
                contentType: "application/x-protobuf", timeout: timeout)
            if Task.isCancelled { return nil }
            guard response.status == 200 else {
                return Self.refusal(status: response.status, body: response.body, worker: prefill.name).error
            }
            if let result = try? Baton_V1_SubmitPrefillResponse(serializedBytes: response.body) {
                logger.debug("request \(request.id): prefill \(result.prefillMs) ms, KV \(result.kvBytesSent) bytes in \(result.transferMs) ms over \(result.transport.name) (\(result.kvBytesNotSent) bytes held by the decode worker)")
            }
            return nil
        } catch {
            if Task.isCancelled { return nil }
            return GenerationError(.failed, "prefill worker \(prefill.name) failed: \(error)", cause: error)
        }
    }


    // MARK: - Mapping

    private static func wireAddress(_ worker: WorkerEndpoint) -> Baton_V1_WorkerAddress {
        var address = Baton_V1_WorkerAddress()
        address.host = worker.address.host
        address.port = UInt32(clamping: worker.address.port)
        address.hostID = worker.address.hostID
        address.name = worker.name
        return address
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
            return AttemptFailure(error: GenerationError(.unavailable, message), retryable: true, leaveOut: worker)
        case (_, "no_room"), (429, _):
            return AttemptFailure(error: GenerationError(.overloaded, message, retryAfterSeconds: 1), retryable: true)
        case (400..<500, _):
            return AttemptFailure(error: GenerationError(.invalidArgument, message), retryable: false)
        default:
            return AttemptFailure(error: GenerationError(.failed, message), retryable: false)
        }
    }

    // MARK: - Metrics (swift-metrics: the executable chooses where they go)

    /// A generation a draining decode worker offered: `moved` (KV and all), `kept` there (no other worker had
    /// room), or `failed` (the move broke; it went on there).
    private func countMove(_ outcome: String) {
        Counter(label: "baton_router_moves_total", dimensions: [("outcome", outcome)], factory: metrics).increment()
    }

    private func countWorkerRequest(worker: String, role: String) {
        Counter(label: "baton_router_worker_requests_total", dimensions: [("worker", worker), ("role", role)], factory: metrics)
            .increment()
    }
}

/// One generation the client sees as one stream, whichever workers serve it: reads the current decode worker's
/// events, records every token it hands on in its `GenerationMigration`, and when the workers fail, continues the
/// state on others (as the migration decides) without the consumer noticing anything but a pause.
private final class ResumableGeneration: @unchecked Sendable {
    private let backend: ClusterGenerationBackend
    /// Touched only by the consumer's task (one `next` at a time).
    private var migration: GenerationMigration
    private var head: GenerationEvent?
    private var finished = false
    /// The workers serving it now; swapped by the consumer's task, read by `cancel` from any task.
    private let current: Mutex<RemoteGeneration>
    private let cancellation = Mutex<String?>(nil)

    init(backend: ClusterGenerationBackend, state: GenerationState, maxMigrations: Int, first: RemoteGeneration) {
        self.backend = backend
        migration = GenerationMigration(state: state, maxMigrations: maxMigrations)
        migration.opened(promptPath: first.promptPath)
        current = Mutex(first)
    }

    func cancel(reason: String) {
        cancellation.withLock { if $0 == nil { $0 = reason } }
        current.withLock { $0 }.cancel(reason: reason)
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
            let remote = current.withLock { $0 }
            do {
                switch try await remote.nextOutput() {
                case .event(let event):
                    if case .token(let token) = event { migration.delivered(token) }
                    return event
                case .moving(let generated, let bound):
                    await move(from: remote, generated: generated, within: bound)
                }
            } catch {
                try await resume(after: remote.whatFailed(error))
            }
        }
    }

    /// `remote`'s worker drains and paused the generation after `generated` tokens: move it, KV and all, to another
    /// decode worker if one has room; else it goes on where it is. Either way the consumer sees one stream.
    private func move(from remote: RemoteGeneration, generated: Int, within bound: Duration) async {
        // Every token the worker sent before pausing was read first, so the state is the worker's own.
        guard generated == migration.state.generated.count, cancellation.withLock({ $0 }) == nil else { return }
        guard let next = await backend.move(migration.state, from: remote, within: bound) else { return }
        current.withLock { $0 = next }
        // The generation is gone from the draining worker: its stream has nothing more to say.
        remote.cancel(reason: "the generation moved")
        if let reason = cancellation.withLock({ $0 }) { next.cancel(reason: reason) }
    }

    /// Moves the generation to other workers after `failure`, or throws what the client gets.
    private func resume(after failure: GenerationMigration.Failure) async throws(GenerationError) {
        current.withLock { $0 }.cancel(reason: "its workers failed")
        // A consumer that went away ends the worker's stream too: that is no failure to move away from.
        if Task.isCancelled { cancellation.withLock { if $0 == nil { $0 = "the consumer went away" } } }
        if let reason = cancellation.withLock({ $0 }) {
            migration.cancel()
            throw GenerationError(.cancelled, reason)
        }
        switch migration.failed(failure) {
        case .fail(let error):
            throw error
        case .resume(let state, let excluding):
            backend.recordMigration(failure, state: migration.state, number: migration.migrations, of: migration.maxMigrations)
            let (next, _) = try await backend.place(state, excluding: excluding)
            migration.opened(promptPath: next.promptPath)
            current.withLock { $0 = next }
            if let reason = cancellation.withLock({ $0 }) {
                next.cancel(reason: reason)
                throw GenerationError(.cancelled, reason)
            }
        }
    }
}

/// One generation running on a decode worker (and its prefill worker, if any), read by one consumer: decodes the
/// worker's messages on demand and, when they stop, tells which worker failed.
private final class RemoteGeneration: @unchecked Sendable {
    let requestID: String
    let decode: WorkerEndpoint
    var decodeWorker: String { decode.name }
    let prefillWorker: String?
    /// How the decode worker said it computes or takes the prompt (from `opened`).
    private(set) var promptPath: PromptPath?
    /// Prompt positions the decode worker said it holds in its prefix cache when it opened (the prefill worker
    /// ships the rest). Set once, before the generation is shared.
    var decodeCachedTokens = 0
    private var messages: AsyncThrowingStream<[UInt8], any Error>.Iterator
    private let cancelDecode: @Sendable () -> Void
    private var sawToken = false
    /// How the decode stream stopped, when it did not finish.
    private var fault: Fault?
    /// Why the prefill failed: it resets the decode stream, and this is what the consumer hears.
    private let prefillFailure = Mutex<GenerationError?>(nil)
    private let prefill = Mutex<Task<Void, Never>?>(nil)
    /// When the next token is due; keep-alives prove the connection, not the work.
    private let clock: TokenClock
    private let tokenTimeout: Duration
    private let monitor = Mutex<Task<Void, Never>?>(nil)

    private enum Fault {
        /// The stream broke or ended early (the process or its connection is gone).
        case lost
        /// Silent past the idle bound.
        case silent
        /// We reset it (a failed prefill, or the consumer).
        case reset
        /// The worker sent a failure.
        case reported(Baton_V1_DecodeFailure.Code)
    }

    /// What the worker's stream says next: an event for the consumer, or that the worker drains and paused the
    /// generation after `generated` tokens, to be moved within `within` or go on there.
    enum Output {
        case event(GenerationEvent)
        case moving(generated: Int, within: Duration)
    }

    init(
        requestID: String, decode: WorkerEndpoint, prefillWorker: String?,
        messages: AsyncThrowingStream<[UInt8], any Error>, cancelDecode: @escaping @Sendable () -> Void,
        tokenTimeout: Duration
    ) {
        self.requestID = requestID
        self.decode = decode
        self.prefillWorker = prefillWorker
        self.messages = messages.makeAsyncIterator()
        self.cancelDecode = cancelDecode
        clock = TokenClock()
        self.tokenTimeout = tokenTimeout
    }

    /// The worker took the generation: the first token is due within `firstTokenWithin`, each next one within
    /// `tokenTimeout` of the one before, else the stream is reset and the worker counts as failed.
    func opened(promptPath: PromptPath?, firstTokenWithin bound: Duration) {
        self.promptPath = promptPath
        clock.due(in: bound)
        let task = Task { [clock, cancelDecode] in await clock.run(onStall: cancelDecode) }
        monitor.withLock { $0 = task }
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
        monitor.withLock { $0 }?.cancel()
    }

    /// Which worker failed, and how, given the error the stream ended with.
    func whatFailed(_ error: GenerationError) -> GenerationMigration.Failure {
        let prefillFailed = prefillFailure.withLock { $0 } != nil
        switch fault {
        case .silent:
            return .init(reason: .decodeSilent, worker: decodeWorker, error: error)
        case .lost:
            return .init(reason: .decodeLost, worker: decodeWorker, error: error)
        case .reported(let code):
            // A transfer that broke or stalled before the first token: the prefill side failed.
            if let prefillWorker, !sawToken, prefillFailed || code == .transferFailed || code == .timeout {
                return .init(reason: .prefillFailed, worker: prefillWorker, error: error)
            }
            return .init(reason: .decodeFailed, worker: decodeWorker, error: error)
        case .reset, nil:
            if let prefillWorker, prefillFailed { return .init(reason: .prefillFailed, worker: prefillWorker, error: error) }
            return .init(reason: .decodeLost, worker: decodeWorker, error: error)
        }
    }

    /// The next worker message (keep-alives are skipped by the client), or nil at the end of the stream.
    func nextMessage() async throws(GenerationError) -> Baton_V1_DecodeEvent? {
        let bytes: [UInt8]?
        do { bytes = try await messages.next() } catch {
            if clock.stalled {
                fault = .silent
                throw GenerationError(.timeout, "decode worker \(decodeWorker) made no progress (no token within its bound)")
            }
            switch (error as? RPCError)?.code {
            case .timeout?: fault = .silent
            case .cancelled?: fault = .reset
            default: fault = prefillFailure.withLock { $0 } != nil ? .reset : .lost
            }
            throw failure(GenerationError(.failed, "decode worker \(decodeWorker): \(error)", cause: error))
        }
        guard let bytes else { return nil }
        do { return try Baton_V1_DecodeEvent(serializedBytes: bytes) } catch {
            throw GenerationError(.failed, "decode worker \(decodeWorker) sent an unreadable event", cause: error)
        }
    }

    func nextOutput() async throws(GenerationError) -> Output {
        while true {
            guard let message = try await nextMessage() else {
                fault = clock.stalled ? .silent : .lost
                throw failure(GenerationError(.failed, "decode worker \(decodeWorker) ended the generation without finishing it"))
            }
            switch message.event {
            case .token(let token):
                sawToken = true
                clock.due(in: tokenTimeout)
                return .event(.token(GeneratedToken(proto: token)))
            case .finished(let finished):
                monitor.withLock { $0 }?.cancel()
                var handoff: KVHandoffSummary?
                if finished.transport != .unspecified {
                    handoff = KVHandoffSummary(
                        transport: finished.transport.name, bytes: Int(finished.kvBytes),
                        seconds: Double(finished.kvTransferMs) / 1000, cachedTokens: Int(finished.kvCachedTokens),
                        bytesNotShipped: Int(finished.kvBytesNotShipped))
                }
                return .event(
                    .finished(
                        GenerationSummary(
                            reason: try FinishReason(proto: finished.reason), promptTokens: Int(finished.promptTokens),
                            completionTokens: Int(finished.completionTokens), handoff: handoff,
                            workers: ServingWorkers(prefill: prefillWorker, decode: decodeWorker))))
            case .failure(let failure):
                fault = .reported(failure.code)
                throw self.failure(Self.error(failure, worker: decodeWorker))
            case .moving(let moving):
                let bound = Duration.milliseconds(Int(moving.deadlineMs))
                // Paused for the move: the next token may come from here only after the offer.
                clock.due(in: bound + tokenTimeout)
                return .moving(generated: Int(moving.generatedTokens), within: bound)
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

/// When a generation's next token is due. `run` resets the stream (through `onStall`) once it is late.
private final class TokenClock: Sendable {
    private let state = Mutex<(due: ContinuousClock.Instant, stalled: Bool)>((.now, false))

    var stalled: Bool { state.withLock { $0.stalled } }

    func due(in bound: Duration) {
        state.withLock { $0.due = .now + bound }
    }

    func run(onStall: @Sendable () -> Void) async {
        while !Task.isCancelled {
            let due = state.withLock { $0.due }
            if due <= .now {
                state.withLock { $0.stalled = true }
                return onStall()
            }
            do { try await Task.sleep(until: due, clock: .continuous) } catch { return }
        }
    }
}
