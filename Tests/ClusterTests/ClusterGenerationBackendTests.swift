import ClusterProtocol
import Foundation
import Generation
import Metrics
import Placement
import Prometheus
import RPC
import Synchronization
import Testing

@testable import Cluster

/// The router's cluster backend against fake placement and worker processes on real mTLS sockets: what it
/// asks of each, what it relays, and how it maps their refusals.
@Suite("Cluster generation backend")
struct ClusterGenerationBackendTests {
    @Test("a disaggregated request opens decode, submits prefill to the named decode worker, and relays the tokens")
    func disaggregatedRequest() async throws {
        try await FakeCluster.run(mode: .disaggregated) { cluster, backend in
            let request = GenerationRequest(
                id: "req-1", prompt: [1, 2, 3, 4, 5], maxNewTokens: 3,
                sampling: SamplingParameters(temperature: 0.7, topP: 0.9, seed: 42, logprobs: 2))
            let (tokens, summary) = try await collect(try await backend.generate(GenerationState(request: request)))
            #expect(tokens.map(\.id) == [105, 104, 103])
            #expect(tokens.first?.logprob == -0.5)
            #expect(tokens.first?.topLogprobs.count == 2)
            #expect(tokens.first?.random == RandomState(9, 8, 7, 6), "the generator state reaches the router")
            #expect(summary == GenerationSummary(
                reason: .maxTokens, promptTokens: 5, completionTokens: 3,
                handoff: KVHandoffSummary(transport: "tls-h2", bytes: 4096, seconds: 0.012),
                workers: ServingWorkers(prefill: "prefill-a", decode: "decode-a")))
            let open = try #require(cluster.log.withLock { $0.opened.first })
            #expect(GenerationState(proto: open.state) == GenerationState(request: request))
            #expect(!open.prefillHere)
            let submit = try #require(cluster.log.withLock { $0.submitted.first })
            #expect(submit.requestID == "req-1" && submit.promptTokens == [1, 2, 3, 4, 5])
            #expect(Int(submit.decodeWorker.port) == cluster.decodePort && submit.decodeWorker.hostID == "host-a")
        }
    }

    @Test("a decode-only choice runs the prompt on the decode worker and never calls prefill")
    func decodeOnlyRequest() async throws {
        try await FakeCluster.run(mode: .decodeOnly) { cluster, backend in
            let (tokens, summary) = try await collect(
                try await backend.generate(Self.state("short", [7, 8], maxTokens: 5)))
            #expect(tokens.map(\.id) == [102, 101])
            #expect(summary.reason == .endOfGeneration && summary.completionTokens == 2)
            #expect(summary.workers == ServingWorkers(prefill: nil, decode: "decode-a"), "the decode worker ran the prompt")
            #expect(cluster.log.withLock { $0.opened.first?.prefillHere } == true)
            #expect(cluster.log.withLock { $0.submitted.isEmpty })
        }
    }

    @Test("placement's 429 becomes overloaded with its retry delay and 503 becomes no worker available")
    func placementRefusals() async throws {
        try await FakeCluster.run(mode: .refuse(429)) { _, backend in
            let error = await #expect(throws: GenerationError.self) {
                _ = try await backend.generate(Self.state("x", [1], maxTokens: 1))
            }
            #expect(error?.code == .overloaded && error?.retryAfterSeconds == 3)
        }
        try await FakeCluster.run(mode: .refuse(503)) { _, backend in
            let error = await #expect(throws: GenerationError.self) {
                _ = try await backend.generate(Self.state("x", [1], maxTokens: 1))
            }
            #expect(error?.code == .unavailable)
            #expect(await backend.health() != .ready)
        }
    }

    @Test("a draining decode worker is skipped by choosing again")
    func drainingWorkerIsRetried() async throws {
        try await FakeCluster.run(mode: .disaggregated, drainingRefusals: 1) { cluster, backend in
            let (tokens, _) = try await collect(
                try await backend.generate(Self.state("retry", [1, 2], maxTokens: 2)))
            #expect(tokens.map(\.id) == [102, 101])
            #expect(cluster.log.withLock { $0.chooseCalls } == 2)
        }
    }

    @Test("a decode worker's failure event ends the stream with a server error")
    func failureMidStream() async throws {
        try await FakeCluster.run(mode: .disaggregated, failAfterTokens: 1) { _, backend in
            let stream = try await backend.generate(Self.state("fail", [1, 2, 3], maxTokens: 3))
            let error = await #expect(throws: GenerationError.self) { _ = try await collect(stream) }
            #expect(error?.code == .failed)
            #expect(error?.message.contains("decode worker decode-a: injected failure") == true)
        }
    }

    @Test("cancelling the consumer resets the decode stream, and the worker sees it")
    func cancellationReachesTheWorker() async throws {
        try await FakeCluster.run(mode: .disaggregated, endless: true) { cluster, backend in
            let stream = try await backend.generate(Self.state("cancel", [1, 2, 3], maxTokens: 1000))
            let received = Atomic<Int>(0)
            // The router cancels the consuming task (client gone, stop string, timeout); so does this test.
            let consumer = Task {
                for try await event in stream {
                    if case .token = event { received.add(1, ordering: .relaxed) }
                }
            }
            while received.load(ordering: .relaxed) < 3 { try await Task.sleep(for: .milliseconds(5)) }
            consumer.cancel()
            _ = await consumer.result
            let deadline = ContinuousClock.now + .seconds(5)
            while !cluster.log.withLock({ $0.decodeCancelled }) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(cluster.log.withLock { $0.decodeCancelled })
        }
    }

    @Test("a failed prefill answers the client at once and resets the decode worker's waiting stream")
    func prefillFailureResetsDecode() async throws {
        try await FakeCluster.run(mode: .disaggregated, prefillStatus: 502) { cluster, backend in
            let started = ContinuousClock.now
            let error = await #expect(throws: GenerationError.self) {
                _ = try await backend.generate(Self.state("p-fail", [1, 2, 3], maxTokens: 3))
            }
            #expect(error?.code == .failed)
            #expect(error?.message.contains("worker prefill-a: no OpenDecode for p-fail") == true, "\(String(describing: error))")
            #expect(started.duration(to: .now) < .seconds(5))
            let deadline = ContinuousClock.now + .seconds(5)
            while !cluster.log.withLock({ $0.decodeCancelled }) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(cluster.log.withLock { $0.decodeCancelled })
        }
    }

    @Test("a decode worker's refusal while waiting for room sends the request to another choice")
    func noRoomIsRetried() async throws {
        try await FakeCluster.run(mode: .disaggregated, noRoomRefusals: 1) { cluster, backend in
            let (tokens, _) = try await collect(try await backend.generate(Self.state("room", [1, 2], maxTokens: 2)))
            #expect(tokens.map(\.id) == [102, 101])
            #expect(cluster.log.withLock { $0.chooseCalls } == 2)
        }
    }

    @Test("a finish reason the router does not know is an error, never a silent stop")
    func unknownFinishReason() async throws {
        try await FakeCluster.run(mode: .decodeOnly, finishReason: .unspecified) { _, backend in
            let error = await #expect(throws: GenerationError.self) {
                _ = try await collect(try await backend.generate(Self.state("odd", [7], maxTokens: 1)))
            }
            #expect(error?.message.contains("unknown reason") == true)
        }
    }

    static func state(_ id: String, _ prompt: [Int32], maxTokens: Int) -> GenerationState {
        GenerationState(request: GenerationRequest(id: id, prompt: prompt, maxNewTokens: maxTokens, sampling: .greedy))
    }

    @Test("per-worker requests and load go to the metrics factory the router gives")
    func workerMetrics() async throws {
        let registry = PrometheusCollectorRegistry()
        try await FakeCluster.run(mode: .disaggregated, metrics: PrometheusMetricsFactory(registry: registry)) { _, backend in
            _ = try await collect(try await backend.generate(Self.state("m", [1, 2], maxTokens: 2)))
            _ = await backend.health()
        }
        let text = registry.emitToString()
        for expected in [
            #"baton_router_worker_requests_total{worker="decode-a",role="decode"} 1"#,
            #"baton_router_worker_requests_total{worker="prefill-a",role="prefill"} 1"#,
            #"baton_router_worker_queue_depth{worker="decode-a",role="decode"}"#,
            #"baton_router_worker_free_kv_blocks{worker="decode-a",role="decode"}"#,
        ] {
            #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
        }
    }

    @Test("health is ready once placement lists an active decode worker")
    func healthFollowsPlacement() async throws {
        try await FakeCluster.run(mode: .disaggregated) { _, backend in
            #expect(await backend.health() == .ready)
        }
    }
}

/// Reads the stream to its end, as the router does: tokens, exactly one summary, then nothing.
private func collect(_ stream: GenerationStream) async throws -> ([GeneratedToken], GenerationSummary) {
    var tokens: [GeneratedToken] = []
    var summary: GenerationSummary?
    for try await event in stream {
        #expect(summary == nil, "nothing follows the summary")
        switch event {
        case .token(let token): tokens.append(token)
        case .finished(let end): summary = end
        }
    }
    guard let summary else { throw ClusterError(.protocolViolation, "the stream ended without a summary") }
    return (tokens, summary)
}

/// A placement service and two workers, faked with routes on real mTLS listeners.
struct FakeCluster {
    enum Mode {
        case disaggregated, decodeOnly
        case refuse(Int)
    }

    struct Log {
        var opened: [Baton_V1_OpenDecodeRequest] = []
        var submitted: [Baton_V1_SubmitPrefillRequest] = []
        var chooseCalls = 0
        var decodeCancelled = false
    }

    let log: FakeLog
    let decodePort: Int

    static func run(
        mode: Mode, drainingRefusals: Int = 0, noRoomRefusals: Int = 0, failAfterTokens: Int? = nil, endless: Bool = false,
        prefillStatus: Int? = nil, finishReason: Baton_V1_DecodeFinished.Reason? = nil,
        metrics: any MetricsFactory = MetricsSystem.factory,
        _ body: (FakeCluster, ClusterGenerationBackend) async throws -> Void
    ) async throws {
        let authority = try ClusterCertificates.makeAuthority()
        func tls(_ node: String) throws -> NodeTLS {
            ClusterCertificates.tls(node: try ClusterCertificates.issueNode(node, authority: authority), authorityPEM: authority.certificatePEM)
        }
        let log = FakeLog()
        let refusalsLeft = Mutex(drainingRefusals)
        let noRoomLeft = Mutex(noRoomRefusals)
        let prefillDone = AsyncStream<Void>.makeStream()

        var decodeRoutes = NodeRoutes()
        decodeRoutes.on(BatonProtocol.WorkerControl.openDecode) { request, response in
            let message = try Baton_V1_OpenDecodeRequest(serializedBytes: request.body)
            log.withLock { $0.opened.append(message) }
            let prefillHere = message.prefillHere
            if refusalsLeft.withLock({ left in defer { left -= 1 }; return left > 0 }) {
                try await response.respond(status: 503, body: Array(#"{"code":"draining","message":"draining"}"#.utf8))
                return
            }
            let open = GenerationState(proto: message.state)
            try await response.startStream()
            if noRoomLeft.withLock({ left in defer { left -= 1 }; return left > 0 }) {
                var refusal = Baton_V1_DecodeEvent()
                refusal.failure = Baton_V1_DecodeFailure.with { $0.code = .noRoom; $0.message = "queue full" }
                try await response.send(try refusal.serializedBytes())
                return
            }
            var opened = Baton_V1_DecodeEvent()
            opened.opened = Baton_V1_DecodeOpened.with { $0.requestID = open.request.id; $0.worker = "decode-a" }
            try await response.send(try opened.serializedBytes())
            try await response.send([])  // a keep-alive, which the client must skip
            if !prefillHere {
                var iterator = prefillDone.stream.makeAsyncIterator()
                _ = await iterator.next()
            }
            do {
                var sent = 0
                let count = endless ? Int.max : min(open.request.maxNewTokens, open.request.prompt.count)
                while sent < count {
                    if let failAfterTokens, sent == failAfterTokens {
                        var failure = Baton_V1_DecodeEvent()
                        failure.failure = Baton_V1_DecodeFailure.with { $0.code = .internal; $0.message = "injected failure" }
                        try await response.send(try failure.serializedBytes())
                        return
                    }
                    var event = Baton_V1_DecodeEvent()
                    event.token = GeneratedToken(
                        id: Int32(100 + open.request.prompt.count - sent), logprob: -0.5,
                        topLogprobs: (0..<(open.request.sampling.logprobs ?? 0)).map { TokenLogprob(id: Int32($0), logprob: -1) },
                        random: RandomState(9, 8, 7, 6)
                    ).proto
                    try await response.send(try event.serializedBytes())
                    sent += 1
                    if endless { try await Task.sleep(for: .milliseconds(10)) }
                }
                var finished = Baton_V1_DecodeEvent()
                finished.finished = Baton_V1_DecodeFinished.with {
                    $0.reason = finishReason ?? (sent == open.request.maxNewTokens ? .maxTokens : .endOfGeneration)
                    $0.promptTokens = UInt32(open.request.prompt.count)
                    $0.completionTokens = UInt32(sent)
                    if !prefillHere {
                        $0.transport = .tlsHTTP2
                        $0.kvBytes = 4096
                        $0.kvTransferMs = 12
                    }
                }
                try await response.send(try finished.serializedBytes())
            } catch is CancellationError {
                log.withLock { $0.decodeCancelled = true }
                throw CancellationError()
            } catch {
                if Task.isCancelled { log.withLock { $0.decodeCancelled = true } }
                throw error
            }
        }
        let decode = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("decode-a"), routes: decodeRoutes)

        var prefillRoutes = NodeRoutes()
        prefillRoutes.on(BatonProtocol.WorkerControl.submitPrefill) { request, response in
            let submit = try Baton_V1_SubmitPrefillRequest(serializedBytes: request.body)
            log.withLock { $0.submitted.append(submit) }
            if let prefillStatus {
                let body = #"{"code":"transfer_failed","message":"no OpenDecode for \#(submit.requestID)"}"#
                try await response.respond(status: prefillStatus, body: Array(body.utf8))
                return
            }
            prefillDone.continuation.yield()
            let answer = Baton_V1_SubmitPrefillResponse.with {
                $0.requestID = submit.requestID
                $0.promptTokens = UInt32(submit.promptTokens.count)
            }
            try await response.respond(status: 200, contentType: "application/x-protobuf", body: try answer.serializedBytes())
        }
        let prefill = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("prefill-a"), routes: prefillRoutes)

        let decodePort = decode.port, prefillPort = prefill.port
        var placementRoutes = NodeRoutes()
        placementRoutes.on(BatonProtocol.Placement.choose) { request, response in
            log.withLock { $0.chooseCalls += 1 }
            let ask = try PlacementJSON.decode(ChooseRequest.self, from: request.body)
            let decodeEndpoint = WorkerEndpoint(name: "decode-a", address: WorkerAddress(host: "127.0.0.1", port: decodePort, hostID: "host-a"))
            let prefillEndpoint = WorkerEndpoint(name: "prefill-a", address: WorkerAddress(host: "127.0.0.1", port: prefillPort, hostID: "host-a"))
            switch mode {
            case .refuse(let status):
                let refusal = PlacementRefusal(code: "busy", message: "every worker is busy", retryAfterSeconds: status == 429 ? 2.5 : nil)
                try await response.respond(status: status, body: try PlacementJSON.encode(refusal))
            case .disaggregated, .decodeOnly:
                let split = if case .disaggregated = mode { true } else { false }
                let answer = ChooseResponse(
                    mode: split ? .disaggregated : .decodeOnly, prefill: split ? prefillEndpoint : nil,
                    decode: decodeEndpoint, explanation: "\(ask.promptTokens) tokens")
                try await response.respond(status: 200, body: try PlacementJSON.encode(answer))
            }
        }
        placementRoutes.on(BatonProtocol.Placement.status) { _, response in
            var workers: [ClusterStatus.Worker] = []
            if case .disaggregated = mode {
                workers.append(ClusterStatus.Worker(
                    name: "decode-a", status: "active", offeredRoles: [.decode], assignedRoles: [.decode],
                    address: nil, profile: DeviceProfile(name: "decode-a", sgemmGFLOPS: 1, memoryReadGBps: 1,
                                                         memoryTotalBytes: 1, memoryFreeBytes: 1, cores: 1),
                    load: WorkerLoad(), lastSeen: Date(), transports: ["tls-h2"]))
            }
            let status = ClusterStatus(workers: workers, policyFile: "policy.yaml", policyLoadedAt: Date(), events: 0)
            try await response.respond(status: 200, body: try PlacementJSON.encode(status))
        }
        let placement = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("placement"), routes: placementRoutes)

        let servers = [decode, prefill, placement]
        let serving = servers.map { server in Task { await server.run() } }
        let routerTLS = try tls("router")
        let client = PlacementClient(host: "127.0.0.1", port: placement.port, tls: routerTLS)
        let pool = NodeClientPool(tls: routerTLS)
        let backend = ClusterGenerationBackend(placement: client, workers: pool, metrics: metrics)
        do {
            try await body(FakeCluster(log: log, decodePort: decodePort), backend)
        } catch {
            await pool.closeAll()
            await client.close()
            for server in servers { await server.close() }
            serving.forEach { $0.cancel() }
            throw error
        }
        await pool.closeAll()
        await client.close()
        for server in servers { await server.close() }
        serving.forEach { $0.cancel() }
    }
}

/// What the fakes saw, shared between their handlers and the test.
final class FakeLog: Sendable {
    private let state = Mutex(FakeCluster.Log())

    func withLock<R: Sendable>(_ body: (inout FakeCluster.Log) -> R) -> R {
        state.withLock { body(&$0) }
    }
}
