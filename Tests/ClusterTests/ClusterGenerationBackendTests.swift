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
                handoff: KVHandoffSummary(transport: "tls-h2", bytes: 4096, seconds: 0.012, cachedTokens: 16, bytesNotShipped: 2048),
                workers: ServingWorkers(prefill: "prefill-a", decode: "decode-a")))
            let open = try #require(cluster.log.withLock { $0.opened.first })
            #expect(GenerationState(proto: open.state) == GenerationState(request: request))
            #expect(!open.prefillHere)
            // The prompt's deadline is 30 s + 20 ms × 5; it may wait in the prefill queue behind slo.max_queue_depth (4)
            // others given as much each; the decode worker waits for the transfer to start for both together.
            #expect(open.transferTimeoutMs == 150_500, "the decode worker waits as long as the prefill may queue and take")
            let submit = try #require(cluster.log.withLock { $0.submitted.first })
            #expect(submit.requestID == "req-1" && submit.promptTokens == [1, 2, 3, 4, 5])
            #expect(submit.deadlineMs == 30_100 && submit.queueTimeoutMs == 120_400)
            #expect(submit.decodeCachedTokens == 16, "the prefill worker ships only what the decode worker lacks")
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

    @Test("a prompt long enough to split runs on the prefill path on the decode worker when no prefill worker is up")
    func splitPromptWithoutPrefillWorkerKeepsItsPath() async throws {
        try await FakeCluster.run(mode: .decodeOnly) { cluster, backend in
            // decode-a alone, but the threshold says these prompts would be split: placement falls back to decode-only.
            cluster.snapshots.push(FakeCluster.snapshot(mode: .decodeOnly, decodePort: cluster.decodePort,
                                                        prefillPort: cluster.prefillPort,
                                                        policy: { $0.disaggregation.minPromptTokens = 3 }))
            try await Task.sleep(for: .milliseconds(200))
            _ = try await collect(try await backend.generate(Self.state("long", [1, 2, 3, 4], maxTokens: 2)))
            _ = try await collect(try await backend.generate(Self.state("short", [7, 8], maxTokens: 2)))
            let opened = cluster.log.withLock { $0.opened }
            #expect(opened.count == 2 && opened.allSatisfy(\.prefillHere))
            // The long one as the undisturbed cluster would have run it (prefilled); the short one on the decode
            // worker's own path.
            #expect(opened.map { GenerationState(proto: $0.state).promptPath } == [.prefill, nil])
        }
    }

    @Test("under ttft_target a cluster at capacity is overloaded with the policy's retry delay; no worker is unavailable")
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
        try await FakeCluster.run(mode: .disaggregated, drainingRefusals: 1, decodeWorkers: 2) { cluster, backend in
            let (tokens, _) = try await collect(
                try await backend.generate(Self.state("retry", [1, 2], maxTokens: 2)))
            #expect(tokens.map(\.id) == [102, 101])
            let openedOn = cluster.log.withLock { $0.openedOn }
            #expect(openedOn.count == 2 && openedOn[0] != openedOn[1], "the second choice left the draining worker out: \(openedOn)")
        }
    }

    @Test("with resuming off, a decode worker's failure event ends the stream with a server error")
    func failureMidStream() async throws {
        try await FakeCluster.run(mode: .disaggregated, failAfterTokens: 1, maxMigrations: 0) { _, backend in
            let stream = try await backend.generate(Self.state("fail", [1, 2, 3], maxTokens: 3))
            let error = await #expect(throws: GenerationError.self) { _ = try await collect(stream) }
            #expect(error?.code == .failed)
            #expect(error?.message.contains("decode worker decode-a: injected failure") == true)
            #expect(error?.message.contains("resume.max_migrations: 0") == true, "\(String(describing: error))")
        }
    }

    @Test("a decode worker failing mid-stream moves the request with its state, leaving that worker out, in one stream")
    func failureMidStreamResumes() async throws {
        let registry = PrometheusCollectorRegistry()
        try await FakeCluster.run(
            mode: .disaggregated, failAfterTokens: 1, failingOpens: 1, decodeWorkers: 2,
            metrics: PrometheusMetricsFactory(registry: registry)
        ) { cluster, backend in
            let (tokens, summary) = try await collect(
                try await backend.generate(Self.state("moved", [1, 2, 3], maxTokens: 3)))
            #expect(tokens.map(\.id) == [103, 102, 101], "no token repeated or missing")
            #expect(summary.completionTokens == 3)
            let (opened, openedOn) = cluster.log.withLock { ($0.opened, $0.openedOn) }
            #expect(opened.count == 2)
            let resumed = GenerationState(proto: try #require(opened.last).state)
            #expect(resumed.generated == [103])
            #expect(resumed.random == RandomState(9, 8, 7, 6), "the generator state after the last delivered token")
            #expect(openedOn.count == 2 && openedOn[1] != openedOn[0], "the resumed request left the failed worker out: \(openedOn)")
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.contains(#"baton_router_migrations_total{reason="decode_failed"} 1"#), "\(text)")
    }

    @Test("when every decode worker has failed a request once, it goes back to the one that failed it first")
    func everyWorkerFailedOnce() async throws {
        try await FakeCluster.run(mode: .disaggregated, failAfterTokens: 1, failingOpens: 2, decodeWorkers: 2) { cluster, backend in
            let (tokens, summary) = try await collect(try await backend.generate(Self.state("twice", [1, 2, 3], maxTokens: 3)))
            #expect(tokens.map(\.id) == [103, 102, 101] && summary.reason == .maxTokens, "one stream, no error")
            let openedOn = cluster.log.withLock { $0.openedOn }
            #expect(openedOn.count == 3 && openedOn[2] == openedOn[0] && openedOn[1] != openedOn[0], "\(openedOn)")
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

    @Test("with resuming off, a failed prefill answers the client at once and resets the decode worker's waiting stream")
    func prefillFailureResetsDecode() async throws {
        try await FakeCluster.run(mode: .disaggregated, prefillStatus: 502, maxMigrations: 0) { cluster, backend in
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
            #expect(cluster.log.withLock { $0.opened.count } == 2)
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

    @Test("requests beyond the cluster's capacity wait in the router's queue and are answered once a worker has room")
    func queueWaitsForRoom() async throws {
        try await FakeCluster.run(mode: .disaggregated) { cluster, backend in
            let full = WorkerLoad(queueDepth: PlacementPolicy().slo.maxQueueDepth, freeKVBlocks: 100)
            cluster.snapshots.push(FakeCluster.snapshot(mode: .disaggregated, decodePort: cluster.decodePort,
                                                        prefillPort: cluster.prefillPort, decodeLoad: full))
            try await Task.sleep(for: .milliseconds(200))
            let waiting = (0..<3).map { index in
                Task { try await collect(try await backend.generate(Self.state("q\(index)", [1, 2], maxTokens: 2))) }
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(cluster.log.withLock { $0.opened.isEmpty }, "nothing is sent to a worker at capacity")
            cluster.snapshots.push(FakeCluster.snapshot(mode: .disaggregated, decodePort: cluster.decodePort,
                                                        prefillPort: cluster.prefillPort))
            for task in waiting {
                let (tokens, summary) = try await task.value
                #expect(tokens.map(\.id) == [102, 101] && summary.completionTokens == 2)
            }
            #expect(cluster.log.withLock { $0.opened.count } == 3)
        }
    }

    @Test("a full router queue answers overloaded with Retry-After, and a wait past the bound times out")
    func fullQueueIsRefused() async throws {
        try await FakeCluster.run(mode: .disaggregated) { cluster, backend in
            let full = WorkerLoad(queueDepth: PlacementPolicy().slo.maxQueueDepth, freeKVBlocks: 100)
            cluster.snapshots.push(FakeCluster.snapshot(
                mode: .disaggregated, decodePort: cluster.decodePort, prefillPort: cluster.prefillPort, decodeLoad: full
            ) { policy in
                policy.admission.maxWaiting = 1
                policy.admission.maxWaitSeconds = 1.5
                policy.slo.retryAfterSeconds = 4
            })
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            let first = Task { try await backend.generate(Self.state("w1", [1, 2], maxTokens: 2)) }
            try await Task.sleep(for: .milliseconds(300))
            let refused = await #expect(throws: GenerationError.self) {
                _ = try await backend.generate(Self.state("w2", [1, 2], maxTokens: 2))
            }
            #expect(refused?.code == .overloaded && refused?.retryAfterSeconds == 4)
            #expect(refused?.message.contains("admission.max_waiting") == true, "\(String(describing: refused))")
            let timedOut = await #expect(throws: GenerationError.self) { _ = try await first.value }
            #expect(timedOut?.code == .timeout && timedOut?.message.contains("admission.max_wait_seconds") == true)
            #expect(started.duration(to: .now) >= .seconds(1.4))
            #expect(cluster.log.withLock { $0.opened.isEmpty })
        }
    }

    @Test("with placement gone the router keeps choosing from its last snapshot and reports itself degraded")
    func servesWithoutPlacement() async throws {
        try await FakeCluster.run(mode: .disaggregated) { cluster, backend in
            #expect(await backend.health() == .ready)
            await cluster.placement.close()
            let deadline = ContinuousClock.now + .seconds(10)
            var health = await backend.health()
            while health == .ready, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                health = await backend.health()
            }
            guard case .degraded(let reason, let since) = health else {
                Issue.record("expected degraded, got \(health)")
                return
            }
            #expect(reason.contains("unreachable") && reason.contains("snapshot version 1"), "\(reason)")
            #expect(abs(Date().timeIntervalSince1970 - since) < 10)
            let (tokens, _) = try await collect(try await backend.generate(Self.state("alone", [1, 2], maxTokens: 2)))
            #expect(tokens.map(\.id) == [102, 101])
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

    @Test("health is ready once the snapshot lists an active decode worker")
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
        var watches = 0
        /// The decode worker each OpenDecode reached.
        var openedOn: [String] = []
        var decodeCancelled = false
    }

    let log: FakeLog
    let decodePort: Int
    let prefillPort: Int
    /// What the fake placement streams; `push` a new one and the backend hears it.
    let snapshots: FakeSnapshots
    let placement: NodeServer

    /// The membership each mode describes: decode-a and prefill-a active (split at every prompt length), decode-a
    /// alone behind a high split threshold, decode-a with a full queue under `ttft_target` (429), or nobody (503).
    static func snapshot(mode: Mode, decodePort: Int, prefillPort: Int, secondDecodePort: Int? = nil,
                         decodeLoad: WorkerLoad = WorkerLoad(freeKVBlocks: 100),
                         policy configure: (inout PlacementPolicy) -> Void = { _ in }) -> MembershipSnapshot {
        var policy = PlacementPolicy()
        var workers: [(String, WorkerRole, Int, WorkerLoad)] = []
        switch mode {
        case .disaggregated:
            policy.disaggregation.minPromptTokens = 0
            workers = [("decode-a", .decode, decodePort, decodeLoad), ("prefill-a", .prefill, prefillPort, WorkerLoad())]
        case .decodeOnly:
            policy.disaggregation.minPromptTokens = 1000
            workers = [("decode-a", .decode, decodePort, decodeLoad)]
        case .refuse(429):
            policy.admission.policy = .ttftTarget
            policy.slo.retryAfterSeconds = 2.5
            workers = [("decode-a", .decode, decodePort, WorkerLoad(queueDepth: policy.slo.maxQueueDepth, freeKVBlocks: 100))]
        case .refuse:
            break
        }
        if let secondDecodePort, !workers.isEmpty { workers.append(("decode-b", .decode, secondDecodePort, decodeLoad)) }
        configure(&policy)
        let at = Date()
        var events: [MembershipEvent] = []
        for (name, role, port, load) in workers {
            let profile = DeviceProfile(name: name, sgemmGFLOPS: 1, memoryReadGBps: 1, memoryTotalBytes: 1, memoryFreeBytes: 1, cores: 1)
            events += [
                .joined(profile: profile, roles: [role], address: WorkerAddress(host: "127.0.0.1", port: port, hostID: "host-a"),
                        modelFingerprint: "m", incarnation: "1-0000000000000001", at: at),
                .heartbeat(worker: name, load: load, at: at),
            ]
        }
        return MembershipSnapshot(version: 1, placementIncarnation: "fake", policy: policy, events: events, sentAt: at)
    }

    static func run(
        mode: Mode, drainingRefusals: Int = 0, noRoomRefusals: Int = 0, failAfterTokens: Int? = nil,
        failingOpens: Int = .max, endless: Bool = false, prefillStatus: Int? = nil,
        finishReason: Baton_V1_DecodeFinished.Reason? = nil, maxMigrations: Int? = nil, decodeWorkers: Int = 1,
        metrics: any MetricsFactory = MetricsSystem.factory,
        _ body: (FakeCluster, ClusterGenerationBackend) async throws -> Void
    ) async throws {
        let authority = try ClusterCertificates.makeAuthority()
        func tls(_ node: String, _ role: NodeRole) throws -> NodeTLS {
            ClusterCertificates.tls(
                node: try ClusterCertificates.issueNode(node, roles: [role], authority: authority), authorityPEM: authority.certificatePEM)
        }
        let log = FakeLog()
        let refusalsLeft = Mutex(drainingRefusals)
        let noRoomLeft = Mutex(noRoomRefusals)
        let failuresLeft = Mutex(failingOpens)
        let prefillDone = AsyncStream<Void>.makeStream()

        func decodeRoutes(_ name: String) -> NodeRoutes {
        var decodeRoutes = NodeRoutes()
        decodeRoutes.on(BatonProtocol.WorkerControl.openDecode, allow: .roles([.router])) { request, response in
            let message = try Baton_V1_OpenDecodeRequest(serializedBytes: request.body)
            log.withLock {
                $0.opened.append(message)
                $0.openedOn.append(name)
            }
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
            opened.opened = Baton_V1_DecodeOpened.with {
                $0.requestID = open.request.id
                $0.worker = "decode-a"
                // A decode worker that holds a cached prefix says how long (the router passes it to prefill).
                if !prefillHere { $0.cachedPromptTokens = 16 }
            }
            try await response.send(try opened.serializedBytes())
            try await response.send([])  // a keep-alive, which the client must skip
            if !prefillHere {
                var iterator = prefillDone.stream.makeAsyncIterator()
                _ = await iterator.next()
            }
            let failing = failuresLeft.withLock { left in defer { left -= 1 }; return left > 0 }
            do {
                // A continued state goes on after the tokens it holds.
                var sent = open.generated.count
                let count = endless ? Int.max : min(open.request.maxNewTokens, open.request.prompt.count)
                while sent < count {
                    if failing, let failAfterTokens, sent == failAfterTokens {
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
                        $0.kvCachedTokens = 16
                        $0.kvBytesNotShipped = 2048
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
        return decodeRoutes
        }
        let decode = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("decode-a", .decode), routes: decodeRoutes("decode-a"))
        // A second decode worker for the tests that move a request to another one.
        let decodeB: NodeServer? = decodeWorkers > 1
            ? try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("decode-b", .decode), routes: decodeRoutes("decode-b"))
            : nil

        var prefillRoutes = NodeRoutes()
        prefillRoutes.on(BatonProtocol.WorkerControl.submitPrefill, allow: .roles([.router])) { request, response in
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
        let prefill = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("prefill-a", .prefill), routes: prefillRoutes)

        let decodePort = decode.port, prefillPort = prefill.port
        let snapshots = FakeSnapshots(FakeCluster.snapshot(
            mode: mode, decodePort: decodePort, prefillPort: prefillPort, secondDecodePort: decodeB?.port) { policy in
                if let maxMigrations { policy.resume.maxMigrations = maxMigrations }
            })
        var placementRoutes = NodeRoutes()
        placementRoutes.on(BatonProtocol.Placement.watch, allow: .roles([.router])) { _, response in
            log.withLock { $0.watches += 1 }
            try await response.startStream(contentType: "application/json", keepAlive: .seconds(1))
            var sent = 0
            while !Task.isCancelled {
                let (revision, snapshot) = snapshots.current
                if revision != sent {
                    try await response.send(try PlacementJSON.encode(snapshot))
                    sent = revision
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let placement = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("placement", .placement), routes: placementRoutes)

        let servers = [decode, prefill, placement] + (decodeB.map { [$0] } ?? [])
        let serving = servers.map { server in Task { await server.run() } }
        let routerTLS = try tls("router", .router)
        let client = PlacementClient(host: "127.0.0.1", port: placement.port, tls: routerTLS)
        let pool = NodeClientPool(tls: routerTLS)
        let backend = ClusterGenerationBackend(placement: client, workers: pool, metrics: metrics)
        let watching = Task { await backend.run() }
        defer { watching.cancel() }
        let cluster = FakeCluster(log: log, decodePort: decodePort, prefillPort: prefillPort, snapshots: snapshots,
                                  placement: placement)
        do {
            let deadline = ContinuousClock.now + .seconds(10)
            while !backend.hasSnapshot, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            try await body(cluster, backend)
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

/// The snapshot the fake placement streams, with a revision so each new one is sent once.
final class FakeSnapshots: Sendable {
    private let state: Mutex<(Int, MembershipSnapshot)>

    init(_ first: MembershipSnapshot) {
        state = Mutex((1, first))
    }

    var current: (Int, MembershipSnapshot) { state.withLock { $0 } }

    func push(_ snapshot: MembershipSnapshot) {
        state.withLock { $0 = ($0.0 + 1, snapshot) }
    }
}

/// What the fakes saw, shared between their handlers and the test.
final class FakeLog: Sendable {
    private let state = Mutex(FakeCluster.Log())

    func withLock<R: Sendable>(_ body: (inout FakeCluster.Log) -> R) -> R {
        state.withLock { body(&$0) }
    }
}
