import ClusterProtocol
import Foundation
import Generation
import Inference
import KVTransport
import RPC
import Logging
import Placement
import Synchronization

/// A worker's control plane: the `WorkerControl` routes (see `worker.proto`) served on the worker's node
/// listener beside KV transfers.
///
/// Answers (bodies are protobuf unless said otherwise; every non-200 answer is JSON `{"code","message"}`):
/// - `OpenDecode`: the `GenerationState` is validated here (this worker's vocabulary and context), then 200 and a
///   stream of `DecodeEvent`: `opened` once the decode scheduler holds room for it (it may wait in the
///   scheduler's queue first), `token`…, then exactly one `finished` or `failure` (`NO_ROOM` when the queue is
///   full, `TRANSFER_FAILED`, `TIMEOUT`, `CANCELLED`, `INTERNAL`, …); a keep-alive (empty message) every
///   `keepAliveInterval` of silence. Resetting the stream cancels the generation and frees its KV. Refused before
///   the stream: 400 `invalid_argument`, 404 `wrong_role`, 429 `no_room` (a `moved` generation finds no free room
///   now: it never queues), 503 `draining`. A `movable` generation on a draining worker may pause with `moving`:
///   then either more tokens follow (it went on here) or the stream ends without `finished` (it moved).
/// - `SubmitPrefill`: 200 `SubmitPrefillResponse` once the decode worker confirmed the KV and logits. 400
///   `invalid_argument`, 404 `wrong_role`, 409 `cancelled` (a `Cancel` ended it), 502 `transfer_failed`
///   (the decode worker refused, e.g. no OpenDecode for that id, or the transport failed), 503 `draining`,
///   504 `timeout` (its deadline passed), 500 `internal`. Resetting the stream cancels the shipment.
/// - `MoveDecode` (draining, with a `DecodeMover`): 200 `MoveDecodeResponse` once the generation's KV reached the
///   named decode worker (or, without one, once it goes on here). 404 `not_found` (no generation waits to move
///   under that id), 409 `conflict` (its move was decided otherwise: expired, kept), 502 `transfer_failed`, 504
///   `timeout` (the generation then goes on here).
/// - `Cancel`: 200 `CancelResponse` (`found`: a decode or prefill request with that id was live); 400 on a
///   malformed body.
/// - `/health`: 200 `{"status":"ok","name","roles"}`, or 503 `{"code":"draining",…}` while draining.
///
/// `startDraining()` refuses new `OpenDecode` / `SubmitPrefill` (503) while those in flight run on;
/// `waitUntilIdle` tells when they are done. With a `mover`, a draining worker's `movable` generations pause and
/// are offered to their router instead (`moving`, then `MoveDecode`): see `DecodeMover`.
public final class WorkerService: Sendable {
    public let name: String
    public let decode: DecodeScheduler?
    public let prefill: PrefillService?
    /// How often an `OpenDecode` stream carries a keep-alive (default 1 s: well inside a client's idle timeout).
    public let keepAliveInterval: Duration
    /// A `SubmitPrefill` deadline when the request gives none (default 120 s).
    public let defaultPrefillDeadline: Duration
    /// How long an `OpenDecode` waiting for its KV transfer to start keeps its room when the request names no
    /// bound (default 30 s), and the most a request may ask for (default 10 min; also the most it may ask for
    /// `kv_progress_timeout_ms`).
    public let defaultTransferTimeout: Duration
    public let maximumTransferTimeout: Duration
    /// Once a transfer started, the longest wait for each next layer and the completion when the request names
    /// no bound: this plus `defaultKVProgressPerToken` per prompt token (a layer of a long prompt takes longer to
    /// compute). Defaults 10 s and 5 ms.
    public let defaultKVProgressTimeout: Duration
    public let defaultKVProgressPerToken: Duration
    /// `OpenDecode` reservations waiting for KV: who may send each, what each opener holds (read by the KV receiver).
    public let reservations = KVReservations()
    /// The share of this worker's KV blocks that reservations opened by one peer may hold while they wait for
    /// KV (default 1: no cap). With several routers, a share below 1 keeps one from starving the others by
    /// opening and never sending; `maximumTransferTimeout` bounds how long it could anyway.
    public let peerKVShare: Double
    /// Moves generations away when draining (nil: they finish here).
    public let mover: DecodeMover?
    private let vocabularySize: Int
    private let logger: Logger
    private let draining = Atomic<Bool>(false)
    private let inFlight = Atomic<Int>(0)

    /// - Parameters:
    ///   - decode: the decode scheduler (roles decode and both), already started.
    ///   - prefill: the prefill queue (roles prefill and both).
    public init(
        name: String, decode: DecodeScheduler?, prefill: PrefillService?, vocabularySize: Int,
        keepAliveInterval: Duration = .seconds(1), defaultPrefillDeadline: Duration = .seconds(120),
        defaultTransferTimeout: Duration = .seconds(30), maximumTransferTimeout: Duration = .seconds(600),
        defaultKVProgressTimeout: Duration = .seconds(10), defaultKVProgressPerToken: Duration = .milliseconds(5),
        peerKVShare: Double = 1, mover: DecodeMover? = nil,
        logger: Logger = Logger(label: "baton.worker")
    ) {
        self.peerKVShare = peerKVShare
        self.mover = mover
        self.name = name
        self.decode = decode
        self.prefill = prefill
        self.vocabularySize = vocabularySize
        self.keepAliveInterval = keepAliveInterval
        self.defaultPrefillDeadline = defaultPrefillDeadline
        self.defaultTransferTimeout = defaultTransferTimeout
        self.maximumTransferTimeout = maximumTransferTimeout
        self.defaultKVProgressTimeout = defaultKVProgressTimeout
        self.defaultKVProgressPerToken = defaultKVProgressPerToken
        self.logger = logger
    }

    /// The roles this service serves.
    public var roles: [WorkerRole] {
        (decode != nil ? [WorkerRole.decode] : []) + (prefill != nil ? [WorkerRole.prefill] : [])
    }

    /// Only routers open decodes, submit prefills and cancel; any cluster node may ask for health. (KV transfers,
    /// on the same listener, are taken from prefill nodes only, for requests opened for them.)
    public var routes: NodeRoutes {
        var routes = NodeRoutes()
        let routers = NodeAccess.roles([.router])
        routes.on(BatonProtocol.WorkerControl.openDecode, allow: routers) { [self] request, writer in try await openDecode(request, writer) }
        routes.on(BatonProtocol.WorkerControl.submitPrefill, allow: routers) { [self] request, writer in try await submitPrefill(request, writer) }
        routes.on(BatonProtocol.WorkerControl.cancel, allow: routers) { [self] request, writer in try await cancel(request, writer) }
        routes.on(BatonProtocol.WorkerControl.moveDecode, allow: routers) { [self] request, writer in try await moveDecode(request, writer) }
        routes.on(BatonProtocol.WorkerControl.health, allow: .anyNode) { [self] _, writer in try await health(writer) }
        return routes
    }

    // MARK: Draining and load

    /// Refuses new work from now on; requests in flight go on.
    public func startDraining() {
        draining.store(true, ordering: .sequentiallyConsistent)
    }

    public var isDraining: Bool { draining.load(ordering: .sequentiallyConsistent) }

    /// `OpenDecode` and `SubmitPrefill` requests being served.
    public var requestsInFlight: Int { inFlight.load(ordering: .sequentiallyConsistent) }

    /// Waits until no request is in flight, at most `timeout`; returns whether that happened.
    public func waitUntilIdle(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while requestsInFlight > 0 {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// The load to report in heartbeats. A decode worker's free blocks are the ones not committed to a
    /// request (reservations count as used); latencies are recent means: time to first token (from
    /// `OpenDecode`, transfer included) and per output token on decode workers, the whole shipment on
    /// prefill-only workers.
    public func load() -> WorkerLoad {
        var load = WorkerLoad()
        if let decode {
            let counters = decode.load
            load.queueDepth += counters.waiting
            load.activeSequences += counters.active
            load.freeKVBlocks = counters.uncommittedBlocks
            load.totalKVBlocks = counters.totalBlocks
            load.recentTTFTMs = decode.timeToFirstToken.mean.map { $0 * 1000 }
            load.recentTPOTMs = decode.timePerOutputToken.mean.map { $0 * 1000 }
            load.promptTokens = counters.promptTokens
            load.cachedPromptTokens = counters.cachedPromptTokens
            load.kvBytesShipped = counters.kvBytesReceived
            load.kvBytesNotShipped = counters.kvBytesNotShipped
        }
        if let prefill {
            load.queueDepth += prefill.queued
            load.activeSequences += prefill.inFlight
            let prompts = prefill.shipper.promptTokens
            load.promptTokens = (load.promptTokens ?? 0) + prompts.all
            load.cachedPromptTokens = (load.cachedPromptTokens ?? 0) + prompts.cached
            let kv = prefill.kvBytes
            load.kvBytesShipped = (load.kvBytesShipped ?? 0) + kv.sent
            load.kvBytesNotShipped = (load.kvBytesNotShipped ?? 0) + kv.notSent
            if decode == nil {
                let blocks = prefill.kvBlocks
                load.freeKVBlocks = blocks.free
                load.totalKVBlocks = blocks.total
                load.recentTTFTMs = prefill.shipmentTime.mean.map { $0 * 1000 }
            }
        }
        return load
    }

    /// Counts a request in unless draining.
    private func enter() -> Bool {
        inFlight.add(1, ordering: .sequentiallyConsistent)
        if isDraining {
            inFlight.subtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    private func leave() {
        inFlight.subtract(1, ordering: .sequentiallyConsistent)
    }

    // MARK: Routes

    private func openDecode(_ request: NodeRequest, _ writer: NodeResponseWriter) async throws {
        guard let decode else {
            return try await refuse(writer, 404, "wrong_role", "worker \(name) does not decode (roles: \(roleNames))")
        }
        guard let message = try await parse(request, writer, "an OpenDecodeRequest", { try Baton_V1_OpenDecodeRequest(serializedBytes: $0) })
        else { return }
        let state: GenerationState
        let source: DecodeScheduler.PromptSource
        do throws(GenerationError) {
            state = try GenerationState(proto: message.state)
                .validated(vocabularySize: vocabularySize, contextLength: decode.contextLength)
            if message.moved && message.prefillHere {
                throw GenerationError(.invalidArgument, "a moved generation's KV comes from its worker: prefill_here is not allowed", param: "moved")
            }
            if message.prefillHere {
                source = .computeHere
            } else {
                let timeout = message.transferTimeoutMs == 0 ? defaultTransferTimeout : .milliseconds(Int(message.transferTimeoutMs))
                let progress = message.kvProgressTimeoutMs == 0
                    ? defaultKVProgressTimeout + defaultKVProgressPerToken * (state.request.prompt.count + state.generated.count)
                    : .milliseconds(Int(message.kvProgressTimeoutMs))
                for (name, value, bound) in [
                    ("transfer_timeout_ms", message.transferTimeoutMs, timeout),
                    ("kv_progress_timeout_ms", message.kvProgressTimeoutMs, progress),
                ] where bound > maximumTransferTimeout {
                    throw GenerationError(
                        .invalidArgument,
                        "\(name) \(value) exceeds this worker's limit of \(Int(maximumTransferTimeout / .milliseconds(1)))",
                        param: name)
                }
                source = message.moved ? .moved(timeout: timeout, progress: progress) : .transfer(timeout: timeout, progress: progress)
                if message.moved, state.generated.isEmpty {
                    throw GenerationError(.invalidArgument, "a moved generation needs its generated tokens", param: "moved")
                }
            }
        } catch {
            return try await refuse(writer, 400, "invalid_argument", error.message)
        }
        // The KV may come only from the prefill node the router named (with certificates), and what one peer holds
        // waiting for KV is bounded.
        var reserved = false
        if source != .computeHere {
            if case .node = request.peer, message.prefillWorker.isEmpty {
                return try await refuse(writer, 400, "invalid_argument", "prefill_worker is required when the KV is transferred")
            }
            let blocks = decode.layout.blocks(forTokens: state.request.prompt.count + state.request.maxNewTokens)
            // A move takes room that is free now or none: it must not wait in the queue behind new requests while
            // the worker it leaves drains (that one goes on with it instead).
            if message.moved, decode.load.uncommittedBlocks < blocks {
                return try await refuse(
                    writer, 429, "no_room",
                    "worker \(name) has \(decode.load.uncommittedBlocks) KV blocks free; the moved generation needs \(blocks)")
            }
            // A share of 1 is no cap: requests beyond the cache wait in the scheduler's queue as before.
            let limit = peerKVShare >= 1 ? Int.max : Int(Double(decode.load.totalBlocks) * peerKVShare)
            if let refusal = reservations.open(
                state.request.id, opener: request.peer.name,
                sender: message.prefillWorker.isEmpty ? nil : message.prefillWorker, blocks: blocks, peerLimit: limit)
            {
                logger.warning("\(request.refusalLine(refusal))")
                return try await refuse(writer, 429, "no_room", refusal)
            }
            reserved = true
        }
        defer { if reserved { reservations.close(state.request.id) } }
        guard enter() else { return try await refuse(writer, 503, "draining", "worker \(name) is draining") }
        defer { leave() }

        // The stream starts at once: a generation waiting for room sends keep-alives until `opened` (or a failure).
        try await writer.startStream(keepAlive: keepAliveInterval)
        var event = Baton_V1_DecodeEvent()
        var stream: GenerationStream
        do {
            stream = try await decode.open(state, prompt: source, movable: message.movable && mover != nil)
        } catch {
            event.failure = Self.failure(error)
            logger.info("OpenDecode \(state.request.id) refused: \(error)")
            return try await writer.send(try event.serializedBytes())
        }
        // A reset stream (or a handler that ends early) cancels the generation; after `finished` this is a no-op.
        defer { stream.cancel(reason: "the OpenDecode stream was reset") }
        event.opened.requestID = state.request.id
        event.opened.worker = name
        event.opened.promptPath = Optional(decode.promptPath(for: state, source: source)).proto
        if case .transfer = source {
            // The prefill worker must ship from here on: the positions before it are held for this request.
            event.opened.cachedPromptTokens = UInt32(clamping: decode.transferStart(requestID: state.request.id) ?? 0)
        }
        try await writer.send(try event.serializedBytes())
        while true {
            do {
                try await relay(stream, state.request.id, writer)
                return
            } catch let parked as DecodeScheduler.Parked {
                // Draining: the scheduler paused it for a move. It either moved (this stream ends here: the router
                // reads on from the worker it moved to) or goes on here, on a new stream.
                guard let next = try await offerMove(parked.departure, writer) else { return }
                stream = next
            }
        }
    }

    /// Sends `stream`'s events as `DecodeEvent`s until it ends (a failure is sent as one); rethrows `Parked` and
    /// the writer's errors.
    private func relay(_ stream: GenerationStream, _ requestID: String, _ writer: NodeResponseWriter) async throws {
        var event = Baton_V1_DecodeEvent()
        do {
            for try await update in stream {
                switch update {
                case .token(let token):
                    event.token = token.proto
                case .finished(let summary):
                    var finished = Baton_V1_DecodeFinished()
                    finished.reason = summary.reason.proto
                    finished.promptTokens = UInt32(clamping: summary.promptTokens)
                    finished.completionTokens = UInt32(clamping: summary.completionTokens)
                    if let handoff = summary.handoff {
                        finished.transport = Baton_V1_TransportKind(name: handoff.transport)
                        finished.kvBytes = UInt64(handoff.bytes)
                        finished.kvTransferMs = UInt32(min(handoff.seconds * 1000, Double(UInt32.max)))
                        finished.kvCachedTokens = UInt32(clamping: handoff.cachedTokens)
                        finished.kvBytesNotShipped = UInt64(handoff.bytesNotShipped)
                    }
                    event.finished = finished
                }
                try await writer.send(try event.serializedBytes())
            }
            if case .finished = event.event {} else {
                logger.warning("OpenDecode \(requestID) ended without finishing (cancelled: \(Task.isCancelled))")
            }
        } catch let error as GenerationError {
            logger.info("OpenDecode \(requestID) failed: \(error)")
            event.failure = Self.failure(error)
            try await writer.send(try event.serializedBytes())
        }
    }

    /// Tells the router a paused generation may move (`moving`) and waits for the decision (`MoveDecode`, or the
    /// mover's deadline). Returns the stream it goes on with here, or nil once it moved.
    private func offerMove(_ departure: DecodeScheduler.KVDeparture, _ writer: NodeResponseWriter) async throws -> GenerationStream? {
        guard let mover else {
            // Only movable generations park, and only with a mover: go on.
            return try departure.resume()
        }
        let offer = mover.offer(departure)
        defer { mover.withdraw(offer) }
        var event = Baton_V1_DecodeEvent()
        event.moving.generatedTokens = UInt32(clamping: departure.state.generated.count)
        event.moving.deadlineMs = UInt32(clamping: Int(mover.offerTimeout / .milliseconds(1)))
        do {
            try await writer.send(try event.serializedBytes())
        } catch {
            departure.cancel(reason: "the OpenDecode stream was reset")
            throw error
        }
        switch await offer.decision() {
        case .moved:
            return nil
        case .kept:
            if Task.isCancelled {
                departure.cancel(reason: "the OpenDecode stream was reset")
                throw CancellationError()
            }
            do { return try departure.resume() } catch {
                departure.cancel(reason: error.message)
                throw error
            }
        }
    }

    /// The wire form of a generation's refusal or failure.
    private static func failure(_ error: GenerationError) -> Baton_V1_DecodeFailure {
        var failure = Baton_V1_DecodeFailure()
        failure.code = switch error.code {
        case .overloaded: .noRoom
        case .unavailable: .draining
        case .invalidArgument, .contextLengthExceeded: .invalidArgument
        case .timeout: .timeout
        case .cancelled: .cancelled
        case .kvTransferFailed: .transferFailed
        default: .internal
        }
        failure.message = error.message
        return failure
    }

    private func submitPrefill(_ request: NodeRequest, _ writer: NodeResponseWriter) async throws {
        guard let prefill else {
            return try await refuse(writer, 404, "wrong_role", "worker \(name) does not prefill (roles: \(roleNames))")
        }
        guard let message = try await parse(request, writer, "a SubmitPrefillRequest", { try Baton_V1_SubmitPrefillRequest(serializedBytes: $0) })
        else { return }
        do throws(GenerationError) {
            // The prompt as a request with one token to generate: the same checks as everywhere else.
            _ = try GenerationRequest(
                id: message.requestID, prompt: message.promptTokens, maxNewTokens: 1, sampling: .greedy
            ).validated(vocabularySize: vocabularySize, contextLength: prefill.contextLength)
            let target = message.decodeWorker
            guard message.hasDecodeWorker, !target.host.isEmpty, (1...65535).contains(target.port) else {
                throw GenerationError(.invalidArgument, "decode_worker needs a host and a port in 1...65535")
            }
            // The KV connection checks the decode node's certificate against this name.
            guard !target.name.isEmpty || request.peer == .unauthenticated else {
                throw GenerationError(.invalidArgument, "decode_worker needs the decode node's name")
            }
            guard Int(message.decodeCachedTokens) < message.promptTokens.count else {
                throw GenerationError(
                    .invalidArgument,
                    "decode_cached_tokens \(message.decodeCachedTokens) leaves nothing of the \(message.promptTokens.count) prompt tokens to send",
                    param: "decode_cached_tokens")
            }
        } catch {
            return try await refuse(writer, 400, "invalid_argument", error.message)
        }
        guard enter() else { return try await refuse(writer, 503, "draining", "worker \(name) is draining") }
        defer { leave() }
        let deadline = message.deadlineMs == 0 ? defaultPrefillDeadline : .milliseconds(Int(message.deadlineMs))
        let queueTimeout = message.queueTimeoutMs == 0 ? deadline : .milliseconds(Int(message.queueTimeoutMs))
        let result: PrefillResult
        do {
            result = try await prefill.submit(
                requestID: message.requestID, prompt: message.promptTokens, decodeHolds: Int(message.decodeCachedTokens),
                decodeName: message.decodeWorker.name, host: message.decodeWorker.host, port: Int(message.decodeWorker.port),
                queueTimeout: queueTimeout, deadline: deadline)
        } catch {
            logger.info("SubmitPrefill \(message.requestID) failed: \(error)")
            let (status, code): (Int, String) = switch error.code {
            case .invalidArgument: (400, "invalid_argument")
            case .cancelled: (409, "cancelled")
            case .transfer: (502, "transfer_failed")
            case .timeout: (504, "timeout")
            default: (500, "internal")
            }
            return try await refuse(writer, status, code, error.description)
        }
        var response = Baton_V1_SubmitPrefillResponse()
        response.requestID = result.requestID
        response.promptTokens = UInt32(result.promptTokens)
        response.kvBytesSent = UInt64(result.kvBytes)
        response.kvBytesNotSent = UInt64(result.kvBytesNotSent)
        response.transport = result.transport.proto
        response.prefillMs = UInt32(min(result.prefillSeconds * 1000, Double(UInt32.max)))
        response.transferMs = UInt32(min(result.transferSeconds * 1000, Double(UInt32.max)))
        try await writer.respond(status: 200, contentType: "application/x-protobuf", body: try response.serializedBytes())
    }

    private func moveDecode(_ request: NodeRequest, _ writer: NodeResponseWriter) async throws {
        guard let message = try await parse(request, writer, "a MoveDecodeRequest", { try Baton_V1_MoveDecodeRequest(serializedBytes: $0) })
        else { return }
        guard let mover else {
            return try await refuse(writer, 404, "not_found", "worker \(name) moves no generations (request \(message.requestID))")
        }
        // In flight although the worker drains (moves only happen then): the drain waits for the answer to go out.
        inFlight.add(1, ordering: .sequentiallyConsistent)
        defer { leave() }
        var target: DecodeMover.Target?
        if message.hasDecodeWorker {
            let address = message.decodeWorker
            guard !address.name.isEmpty, !address.host.isEmpty, address.port > 0, address.port <= 65535 else {
                return try await refuse(writer, 400, "invalid_argument", "decode_worker needs a name, a host and a port")
            }
            target = DecodeMover.Target(name: address.name, host: address.host, port: Int(address.port))
        }
        let outcome: DecodeMover.Outcome
        do throws(WorkerError) {
            outcome = try await mover.move(
                requestID: message.requestID, to: target,
                within: message.deadlineMs == 0 ? nil : .milliseconds(Int(message.deadlineMs)))
        } catch {
            let (status, code): (Int, String) = switch error.code {
            case .notFound: (404, "not_found")
            case .conflict: (409, "conflict")
            case .timeout: (504, "timeout")
            default: (502, "transfer_failed")
            }
            return try await refuse(writer, status, code, error.message)
        }
        var response = Baton_V1_MoveDecodeResponse()
        response.requestID = message.requestID
        if case .moved(let report, let tokens) = outcome {
            response.moved = true
            response.kvTokens = UInt32(clamping: tokens)
            response.kvBytesSent = UInt64(report.bytes)
            response.transport = report.transport.proto
            response.transferMs = UInt32(min(report.seconds * 1000, Double(UInt32.max)))
        }
        try await writer.respond(status: 200, contentType: "application/x-protobuf", body: try response.serializedBytes())
    }

    private func cancel(_ request: NodeRequest, _ writer: NodeResponseWriter) async throws {
        guard let message = try await parse(request, writer, "a CancelRequest", { try Baton_V1_CancelRequest(serializedBytes: $0) })
        else { return }
        let reason = message.reason.isEmpty ? "cancelled by request" : "cancelled: \(message.reason)"
        let decoding = decode?.cancel(requestID: message.requestID, reason: reason) ?? false
        let prefilling = prefill?.cancel(requestID: message.requestID) ?? false
        var response = Baton_V1_CancelResponse()
        response.requestID = message.requestID
        response.found = decoding || prefilling
        try await writer.respond(status: 200, contentType: "application/x-protobuf", body: try response.serializedBytes())
    }

    private func health(_ writer: NodeResponseWriter) async throws {
        if isDraining { return try await refuse(writer, 503, "draining", "worker \(name) is draining") }
        let body: [String: Any] = ["status": "ok", "name": name, "roles": roles.map(\.rawValue)]
        try await writer.respond(status: 200, body: Array(try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])))
    }

    // MARK: Helpers

    private var roleNames: String { roles.isEmpty ? "none" : roles.map(\.rawValue).joined(separator: ", ") }

    /// The request's body decoded by `decode`, or nil once a 400 naming `what` (the expected message) was sent.
    private func parse<Message>(
        _ request: NodeRequest, _ writer: NodeResponseWriter, _ what: String, _ decode: ([UInt8]) throws -> Message
    ) async throws -> Message? {
        do { return try decode(request.body) } catch {
            try await refuse(writer, 400, "invalid_argument", "the body is not \(what): \(error)")
            return nil
        }
    }

    private func refuse(_ writer: NodeResponseWriter, _ status: Int, _ code: String, _ message: String) async throws {
        let body = try JSONSerialization.data(withJSONObject: ["code": code, "message": message], options: [.sortedKeys])
        try await writer.respond(status: status, body: Array(body))
    }
}
