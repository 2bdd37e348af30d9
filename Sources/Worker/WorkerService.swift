import ClusterProtocol
import Foundation
import Inference
import KVTransport
import Logging
import Placement
import Synchronization

/// A worker's control plane: the `WorkerControl` routes (see `worker.proto`) served on the worker's node
/// listener beside KV transfers (`KVTransferServer.bind(..., receiver: scheduler, routes: service.routes)`).
///
/// Answers (bodies are protobuf unless said otherwise; every non-200 answer is JSON `{"code","message"}`):
/// - `OpenDecode`: 200 and a stream of `DecodeEvent`: `opened`, `token`…, then exactly one `finished` or
///   `failure` (`NO_ROOM`, `INVALID_ARGUMENT` for a request id already open, `TRANSFER_FAILED`, `TIMEOUT`,
///   `INTERNAL`, `UNSPECIFIED` when a `Cancel` ended it); a keep-alive (empty message) every
///   `keepAliveInterval`. Resetting the stream cancels the request and frees its KV.
///   Refused before the stream: 400 `invalid_argument`, 404 `wrong_role`, 503 `draining`.
/// - `SubmitPrefill`: 200 `SubmitPrefillResponse` once the decode worker confirmed the KV. 400
///   `invalid_argument`, 404 `wrong_role`, 409 `cancelled` (a `Cancel` ended it), 502 `transfer_failed`
///   (the decode worker refused, e.g. no OpenDecode for that id, or the transport failed), 503 `draining`,
///   504 `timeout` (its deadline passed), 500 `internal`. Resetting the stream cancels the shipment.
/// - `Cancel`: 200 `CancelResponse` (`found`: a decode or prefill request with that id was live); 400 on a
///   malformed body.
/// - `/health`: 200 `{"status":"ok","name","roles"}`, or 503 `{"code":"draining",…}` while draining.
///
/// `startDraining()` refuses new `OpenDecode` / `SubmitPrefill` (503) while those in flight run on;
/// `waitUntilIdle` tells when they are done.
public final class WorkerService: Sendable {
    public let name: String
    public let decode: DecodeScheduler?
    public let prefill: PrefillService?
    /// How often an `OpenDecode` stream carries a keep-alive (default 1 s: well inside a client's idle timeout).
    public let keepAliveInterval: Duration
    /// A `SubmitPrefill` deadline when the request gives none (default 120 s).
    public let defaultPrefillDeadline: Duration
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
        logger: Logger = Logger(label: "baton.worker")
    ) {
        self.name = name
        self.decode = decode
        self.prefill = prefill
        self.vocabularySize = vocabularySize
        self.keepAliveInterval = keepAliveInterval
        self.defaultPrefillDeadline = defaultPrefillDeadline
        self.logger = logger
    }

    /// The roles this service serves.
    public var roles: [WorkerRole] {
        (decode != nil ? [WorkerRole.decode] : []) + (prefill != nil ? [WorkerRole.prefill] : [])
    }

    public var routes: NodeRoutes {
        var routes = NodeRoutes()
        routes.on(BatonProtocol.WorkerControl.openDecode) { [self] request, writer in try await openDecode(request, writer) }
        routes.on(BatonProtocol.WorkerControl.submitPrefill) { [self] request, writer in try await submitPrefill(request, writer) }
        routes.on(BatonProtocol.WorkerControl.cancel) { [self] request, writer in try await cancel(request, writer) }
        routes.on(BatonProtocol.WorkerControl.health) { [self] _, writer in try await health(writer) }
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
        }
        if let prefill {
            load.queueDepth += prefill.queued
            load.activeSequences += prefill.inFlight
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
        let decodeRequest: DecodeRequest
        do throws(WorkerError) {
            try checkPrompt(message.requestID, message.promptTokens, context: decode.contextLength)
            decodeRequest = DecodeRequest(
                requestID: message.requestID, prompt: message.promptTokens,
                maxNewTokens: message.maxNewTokens == 0 ? nil : Int(message.maxNewTokens),
                parameters: try SamplingParameters(proto: message.sampling, vocabularySize: vocabularySize),
                prefillHere: message.prefillHere,
                transferTimeout: message.transferTimeoutMs == 0 ? nil : .milliseconds(Int(message.transferTimeoutMs)))
        } catch {
            return try await refuse(writer, 400, "invalid_argument", error.message)
        }
        guard enter() else { return try await refuse(writer, 503, "draining", "worker \(name) is draining") }
        defer { leave() }

        let (updates, continuation) = AsyncStream<DecodeUpdate>.makeStream()
        decode.open(decodeRequest, updates: continuation)
        let interval = keepAliveInterval
        let keepAlive = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                continuation.yield(.keepAlive)
            }
        }
        defer { keepAlive.cancel() }
        var ended = false
        defer {
            if !ended { decode.cancel(requestID: message.requestID, reason: "the OpenDecode stream was reset") }
        }
        try await writer.startStream()
        for await update in updates {
            var event = Baton_V1_DecodeEvent()
            switch update {
            case .keepAlive:
                try await writer.send([])
                continue
            case .opened:
                var opened = Baton_V1_DecodeOpened()
                opened.requestID = message.requestID
                opened.worker = name
                event.opened = opened
            case .token(let sampled):
                var token = Baton_V1_DecodeToken()
                token.token = sampled.id
                token.logprob = sampled.logprob ?? 0
                token.topLogprobs = sampled.topLogprobs.map { id, logprob in
                    var entry = Baton_V1_TokenLogprob()
                    entry.token = id
                    entry.logprob = logprob
                    return entry
                }
                event.token = token
            case .finished(let outcome):
                ended = true
                var finished = Baton_V1_DecodeFinished()
                switch outcome.reason {
                case .endOfGeneration: finished.reason = .endOfGeneration
                case .maxTokens: finished.reason = .maxTokens
                case .contextFull: finished.reason = .contextFull
                }
                finished.promptTokens = UInt32(outcome.promptTokens)
                finished.completionTokens = UInt32(outcome.completionTokens)
                finished.transport = outcome.transport?.workerProto ?? .unspecified
                finished.kvBytes = UInt64(outcome.kvBytes)
                finished.kvTransferMs = UInt32(min(outcome.kvTransferSeconds * 1000, Double(UInt32.max)))
                event.finished = finished
            case .failed(let kind, let text):
                ended = true
                var failure = Baton_V1_DecodeFailure()
                failure.code = kind.proto
                failure.message = text
                event.failure = failure
                logger.info("OpenDecode \(message.requestID) failed: \(kind.rawValue): \(text)")
            }
            try await writer.send(try event.serializedBytes())
            if ended { break }
        }
    }

    private func submitPrefill(_ request: NodeRequest, _ writer: NodeResponseWriter) async throws {
        guard let prefill else {
            return try await refuse(writer, 404, "wrong_role", "worker \(name) does not prefill (roles: \(roleNames))")
        }
        guard let message = try await parse(request, writer, "a SubmitPrefillRequest", { try Baton_V1_SubmitPrefillRequest(serializedBytes: $0) })
        else { return }
        let parameters: SamplingParameters
        do throws(WorkerError) {
            try checkPrompt(message.requestID, message.promptTokens, context: prefill.contextLength)
            parameters = try SamplingParameters(proto: message.sampling, vocabularySize: vocabularySize)
            let target = message.decodeWorker
            guard message.hasDecodeWorker, !target.host.isEmpty, (1...65535).contains(target.port) else {
                throw WorkerError(.invalidArgument, "decode_worker needs a host and a port in 1...65535")
            }
        } catch {
            return try await refuse(writer, 400, "invalid_argument", error.message)
        }
        guard enter() else { return try await refuse(writer, 503, "draining", "worker \(name) is draining") }
        defer { leave() }
        let deadline = message.deadlineMs == 0 ? defaultPrefillDeadline : .milliseconds(Int(message.deadlineMs))
        let result: PrefillResult
        do {
            result = try await prefill.submit(
                requestID: message.requestID, prompt: message.promptTokens, parameters: parameters,
                host: message.decodeWorker.host, port: Int(message.decodeWorker.port), deadline: deadline)
        } catch {
            logger.info("SubmitPrefill \(message.requestID) failed: \(error)")
            let (status, code): (Int, String) = switch error.code {
            case .invalidArgument: (400, "invalid_argument")
            case .cancelled: (409, "cancelled")
            case .transfer, .badCompletion: (502, "transfer_failed")
            case .timeout: (504, "timeout")
            default: (500, "internal")
            }
            return try await refuse(writer, status, code, error.description)
        }
        var response = Baton_V1_SubmitPrefillResponse()
        response.requestID = result.requestID
        response.promptTokens = UInt32(result.promptTokens)
        response.firstToken = result.firstToken
        response.kvBytesSent = UInt64(result.kvBytes)
        response.transport = result.transport.workerProto
        response.prefillMs = UInt32(min(result.prefillSeconds * 1000, Double(UInt32.max)))
        response.transferMs = UInt32(min(result.transferSeconds * 1000, Double(UInt32.max)))
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

    private func checkPrompt(_ requestID: String, _ prompt: [Int32], context: Int) throws(WorkerError) {
        guard !requestID.isEmpty else { throw WorkerError(.invalidArgument, "request_id is empty") }
        guard !prompt.isEmpty else { throw WorkerError(.invalidArgument, "prompt_tokens is empty") }
        guard prompt.count < context else {
            throw WorkerError(.invalidArgument, "the prompt has \(prompt.count) tokens; this worker's context holds \(context)")
        }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw WorkerError(.invalidArgument, "prompt token \(bad) is outside the vocabulary (0..<\(vocabularySize))")
        }
    }

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

extension DecodeFailureKind {
    /// The wire code (`cancelled` has none of its own: `UNSPECIFIED`, with the reason in the message).
    var proto: Baton_V1_DecodeFailure.Code {
        switch self {
        case .invalidArgument: .invalidArgument
        case .noRoom: .noRoom
        case .draining: .draining
        case .transferFailed: .transferFailed
        case .timeout: .timeout
        case .cancelled: .unspecified
        case .internal: .internal
        }
    }
}
