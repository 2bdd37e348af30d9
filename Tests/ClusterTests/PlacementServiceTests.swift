import RPC
import ClusterProtocol
import Foundation
import Placement
import Synchronization
import Testing
@testable import Cluster

/// The placement service over real sockets with mutual TLS: the API round trips, refusals, restarts,
/// heartbeat loss, draining and who may connect.
@Suite("Placement service", .serialized)
struct PlacementServiceTests {
    @Test("register, heartbeat, choose, status and leave round-trip over mutual TLS")
    func roundTrip() async throws {
        let harness = try await PlacementHarness.start(policy: "disaggregation: {min_prompt_tokens: 64}\n")
        let client = try harness.client()
        let prefill = try await client.register(registration("compute", roles: [.prefill], gflops: 400, port: 7411))
        #expect(prefill == RegisterResponse(name: "compute", assignedRoles: [.prefill], heartbeatIntervalMs: 1000))
        _ = try await client.register(registration("bandwidth", roles: [.decode], gbps: 40, port: 7412))
        #expect(try await client.heartbeat(HeartbeatRequest(name: "bandwidth", load: WorkerLoad(activeSequences: 2, freeKVBlocks: 90, totalKVBlocks: 100))))

        let split = try await client.choose(promptTokens: 500)
        #expect(split.mode == .disaggregated)
        #expect(split.prefill == WorkerEndpoint(name: "compute", address: WorkerAddress(host: "127.0.0.1", port: 7411, hostID: "host-compute")))
        #expect(split.decode.name == "bandwidth")
        #expect(split.decode.address.port == 7412)
        #expect(split.explanation.contains("Answer: admit — prefill on compute, decode on bandwidth"))
        let short = try await client.choose(promptTokens: 10)
        #expect(short.mode == .decodeOnly)
        #expect(short.prefill == nil)
        #expect(short.decode.name == "bandwidth")

        let status = try await client.status()
        #expect(status.workers.map(\.name) == ["bandwidth", "compute"])
        let bandwidth = try #require(status.workers.first)
        #expect(bandwidth.status == "active")
        #expect(bandwidth.assignedRoles == [.decode])
        #expect(bandwidth.address == WorkerAddress(host: "127.0.0.1", port: 7412, hostID: "host-bandwidth"))
        #expect(bandwidth.load.freeKVBlocks == 90)
        #expect(bandwidth.transports == ["tls-h2", "shared-memory"])
        #expect(status.policyFile == harness.policyFile)
        #expect(status.events == 4)

        try await client.leave(name: "compute")
        #expect(try await client.status().workers.map(\.name) == ["bandwidth"])
        #expect(try await client.heartbeat(HeartbeatRequest(name: "compute", load: WorkerLoad())) == false)
        let health = try await rawCall(port: harness.port, path: BatonProtocol.Placement.health, method: "GET", body: [])
        #expect(health.status == 200)
        #expect(health.bodyText == #"{"status":"ok"}"#)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("the watch stream sends a snapshot at once and a higher version after each membership change")
    func watchStream() async throws {
        let harness = try await PlacementHarness.start(policy: "admission: {policy: ttft_target, max_waiting: 7}\n")
        let client = try harness.client()
        let stream = try await client.watch()
        let first = try #require(try await stream.next())
        #expect(first.state.workers.isEmpty)
        #expect(first.policy.admission.policy == .ttftTarget && first.policy.admission.maxWaiting == 7,
                "the policy in force travels with the snapshot")
        _ = try await client.register(registration("d0", roles: [.decode], port: 7411))
        let joined = try #require(try await stream.next())
        #expect(joined.version > first.version)
        #expect(joined.placementIncarnation == first.placementIncarnation)
        #expect(joined.state.workers["d0"]?.address?.port == 7411)
        // A load-only heartbeat refreshes the loads without a new version.
        #expect(try await client.heartbeat(HeartbeatRequest(name: "d0", load: WorkerLoad(queueDepth: 3))))
        var loaded = try #require(try await stream.next())
        while loaded.state.workers["d0"]?.load.queueDepth != 3 { loaded = try #require(try await stream.next()) }
        #expect(loaded.version == joined.version)
        try await client.leave(name: "d0")
        var left = try #require(try await stream.next())
        while left.state.workers["d0"] != nil { left = try #require(try await stream.next()) }
        #expect(left.version > joined.version)
        stream.cancel()
        await harness.stopAndRemove(closing: [client])
    }

    @Test("a registration, heartbeat or departure from a worker's former process is refused; its successor is not")
    func staleIncarnationIsRefused() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        let old = WorkerIncarnation(startedMs: 1_000, random: 7).description
        let new = WorkerIncarnation(startedMs: 2_000, random: 3).description
        var request = registration("d0", roles: [.decode], port: 7411)
        request.incarnation = old
        _ = try await client.register(request)
        request.incarnation = new
        request.address.port = 7500
        _ = try await client.register(request)

        request.incarnation = old
        request.address.port = 7411
        let refused = await #expect(throws: ClusterError.self) { _ = try await client.register(request) }
        #expect(refused?.code == .rejected)
        #expect(refused?.message.contains("stale registration: worker d0 is registered by a newer process") == true,
                "\(String(describing: refused))")
        let heartbeat = await #expect(throws: ClusterError.self) {
            _ = try await client.heartbeat(HeartbeatRequest(name: "d0", load: WorkerLoad(), incarnation: old))
        }
        #expect(heartbeat?.message.contains("stale heartbeat") == true)
        await #expect(throws: ClusterError.self) { try await client.leave(name: "d0", incarnation: old) }
        let member = try #require(await harness.service.registry.members.workers["d0"])
        #expect(member.address?.port == 7500 && member.incarnation == new, "the live process keeps its registration")
        #expect(try await client.heartbeat(HeartbeatRequest(name: "d0", load: WorkerLoad(), incarnation: new)))

        let malformed = registration("d1", roles: [.decode])
        var bad = malformed
        bad.incarnation = "yesterday"
        let invalid = await #expect(throws: ClusterError.self) { _ = try await client.register(bad) }
        #expect(invalid?.message.contains("invalid incarnation 'yesterday'") == true)
        await harness.stopAndRemove(closing: [client])
    }

    @Test("roles are the offered ones the policy allows, and the assignment event says why")
    func roleAssignment() async throws {
        let harness = try await PlacementHarness.start(policy: "prefill: {min_gflops: 200}\n")
        let client = try harness.client()
        let answer = try await client.register(registration("weak", roles: [.prefill, .decode], gflops: 50))
        #expect(answer.assignedRoles == [.decode])
        let status = try await client.status()
        #expect(status.workers.first?.offeredRoles == [.decode, .prefill])
        #expect(status.workers.first?.assignedRoles == [.decode])
        let log = try String(contentsOfFile: harness.service.configuration.membershipLogPath, encoding: .utf8)
        #expect(log.contains("prefill withheld: sgemm 50 GFLOP/s < prefill.min_gflops 200"))
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("refusals map to HTTP statuses with a PlacementRefusal body and to ClusterError codes")
    func refusals() async throws {
        let harness = try await PlacementHarness.start(policy: "slo: {max_queue_depth: 2, retry_after_seconds: 3}\n")
        let client = try harness.client()

        // Nobody registered: 503.
        let empty = try await rawCall(port: harness.port, path: BatonProtocol.Placement.choose, body: Array(#"{"prompt_tokens":5}"#.utf8))
        #expect(empty.status == 503)
        let refusal = try PlacementJSON.decode(PlacementRefusal.self, from: empty.body)
        #expect(refusal.code == "unavailable")
        #expect(refusal.message == "no decode worker is registered")
        let none = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 5) }
        #expect(none?.code == .unavailable)

        // Every decode worker's queue full: 429 with the policy's retry delay.
        _ = try await client.register(registration("busy", roles: [.decode]))
        #expect(try await client.heartbeat(HeartbeatRequest(name: "busy", load: WorkerLoad(queueDepth: 2))))
        let full = try await rawCall(port: harness.port, path: BatonProtocol.Placement.choose, body: Array(#"{"prompt_tokens":5}"#.utf8))
        #expect(full.status == 429)
        let overloaded = try PlacementJSON.decode(PlacementRefusal.self, from: full.body)
        #expect(overloaded.code == "overloaded")
        #expect(overloaded.retryAfterSeconds == 3)
        #expect(overloaded.message.contains("queue depth 2 ≥ slo.max_queue_depth 2"))
        let busy = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 5) }
        #expect(busy?.code == .overloaded)
        #expect(busy?.retryAfterSeconds == 3)

        // Another model: 409.
        let other = try await rawCall(port: harness.port, path: BatonProtocol.Placement.register,
                                      body: try PlacementJSON.encode(registration("stranger", fingerprint: "model-b")),
                                      node: "stranger")
        #expect(other.status == 409)
        #expect(try PlacementJSON.decode(PlacementRefusal.self, from: other.body).message
            == "worker stranger serves model model-b, which is not the cluster's model: every worker must load the same model file")
        let mismatch = await #expect(throws: ClusterError.self) {
            try await client.register(registration("stranger", fingerprint: "model-b"))
        }
        #expect(mismatch?.code == .rejected)

        // Bad bodies: 400; unknown worker: 404; negative prompt: 400.
        let garbage = try await rawCall(port: harness.port, path: BatonProtocol.Placement.heartbeat, body: Array("{".utf8), node: "ghost")
        #expect(garbage.status == 400)
        #expect(try PlacementJSON.decode(PlacementRefusal.self, from: garbage.body).code == "invalid_request")
        let unknown = try await rawCall(port: harness.port, path: BatonProtocol.Placement.heartbeat,
                                        body: try PlacementJSON.encode(HeartbeatRequest(name: "ghost", load: WorkerLoad())),
                                        node: "ghost")
        #expect(unknown.status == 404)
        #expect(try PlacementJSON.decode(PlacementRefusal.self, from: unknown.body).code == "unknown_worker")
        let negative = try await rawCall(port: harness.port, path: BatonProtocol.Placement.choose, body: Array(#"{"prompt_tokens":-1}"#.utf8))
        #expect(negative.status == 400)
        let badName = try await rawCall(port: harness.port, path: BatonProtocol.Placement.register,
                                        body: try PlacementJSON.encode(registration("no spaces please")),
                                        node: "no spaces please")
        #expect(badName.status == 400)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("a worker the service has forgotten (404) registers again through its WorkerAgent")
    func agentReregisters() async throws {
        let harness = try await PlacementHarness.start(policy: "membership: {heartbeat_timeout_seconds: 0.6}\n")
        let admin = try harness.client()
        let agentClient = try harness.client(node: "decode-0")
        let agent = WorkerAgent(client: agentClient, registration: registration("decode-0", roles: [.decode]),
                                load: { WorkerLoad(activeSequences: 1) }, logger: quietLogger)
        let running = Task { await agent.run() }
        #expect(await eventually { agent.registeredName == "decode-0" })
        // Heartbeats every 200 ms (a third of the timeout) keep it active.
        try await Task.sleep(for: .milliseconds(900))
        #expect(try await admin.status().workers.first?.status == "active")
        #expect(try await admin.status().workers.first?.load.activeSequences == 1)

        try await admin.leave(name: "decode-0")
        #expect(try await admin.status().workers.isEmpty)
        #expect(try await eventually { try await admin.status().workers.map(\.name) == ["decode-0"] })

        agent.setDraining(true)
        #expect(try await eventually { try await admin.status().workers.first?.status == "draining" })
        running.cancel()
        await running.value
        await agent.leave()
        #expect(try await admin.status().workers.isEmpty)
        await admin.close()
        await harness.stopAndRemove(closing: [agentClient])
    }

    @Test("a restarted service on the same state folder knows its workers and their addresses")
    func restartKeepsMembership() async throws {
        let first = try await PlacementHarness.start(policy: "disaggregation: {min_prompt_tokens: 0}\n")
        let client = try first.client()
        _ = try await client.register(registration("p0", roles: [.prefill], gflops: 300, port: 7421))
        _ = try await client.register(registration("d0", roles: [.decode], gbps: 30, port: 7422))
        #expect(try await client.heartbeat(HeartbeatRequest(name: "d0", load: WorkerLoad(), draining: true)))
        _ = try await client.register(registration("d1", roles: [.decode], gbps: 20, port: 7423))
        await client.close()
        await first.stop()

        let second = try await PlacementHarness.start(policy: "disaggregation: {min_prompt_tokens: 0}\n",
                                                      stateDirectory: first.stateDirectory)
        let again = try second.client()
        let status = try await again.status()
        #expect(status.workers.map(\.name) == ["d0", "d1", "p0"])
        #expect(status.workers.map(\.status) == ["draining", "active", "active"])
        #expect(status.workers.map { $0.address?.port } == [7422, 7423, 7421])
        #expect(status.workers.map(\.assignedRoles) == [[.decode], [.decode], [.prefill]])
        let choice = try await again.choose(promptTokens: 100)
        #expect(choice.prefill?.address.port == 7421)
        #expect(choice.decode.name == "d1")
        #expect(choice.decode.address == WorkerAddress(host: "127.0.0.1", port: 7423, hostID: "host-d1"))
        // Known workers heartbeat without registering again.
        #expect(try await again.heartbeat(HeartbeatRequest(name: "d0", load: WorkerLoad())))
        #expect(try await again.choose(promptTokens: 100).decode.name == "d0")
        await again.close()
        await second.stopAndRemove()
    }

    @Test("a worker that stops heartbeating is marked lost and choices avoid it until it comes back")
    func heartbeatLoss() async throws {
        // ttft_target: five quick choices on one worker must not fill its queue between two heartbeats.
        let harness = try await PlacementHarness.start(
            policy: "membership: {heartbeat_timeout_seconds: 0.4}\nadmission: {policy: ttft_target}\n")
        let client = try harness.client()
        _ = try await client.register(registration("fast", roles: [.decode], gbps: 40))
        _ = try await client.register(registration("slow", roles: [.decode], gbps: 10))
        #expect(try await client.choose(promptTokens: 5).decode.name == "fast")
        let beating = Task {
            while !Task.isCancelled {
                _ = try? await client.heartbeat(HeartbeatRequest(name: "slow", load: WorkerLoad()))
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(try await eventually { try await client.status().workers.first { $0.name == "fast" }?.status == "lost" })
        #expect(try await client.status().workers.first { $0.name == "slow" }?.status == "active")
        for _ in 0..<5 { #expect(try await client.choose(promptTokens: 5).decode.name == "slow") }
        let log = try String(contentsOfFile: harness.service.configuration.membershipLogPath, encoding: .utf8)
        #expect(log.contains(#""event":"heartbeat_lost""#))
        #expect(try await client.heartbeat(HeartbeatRequest(name: "fast", load: WorkerLoad())))
        #expect(try await client.choose(promptTokens: 5).decode.name == "fast")
        beating.cancel()
        await beating.value
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("a choice leaves out the workers the router names, falls back to decode-only without a prefill worker, and carries the migration budget")
    func choiceExcludesWorkers() async throws {
        let harness = try await PlacementHarness.start(policy: "resume: {max_migrations: 2}\n")
        let client = try harness.client()
        _ = try await client.register(registration("compute", roles: [.prefill], gflops: 400))
        _ = try await client.register(registration("fast", roles: [.decode], gbps: 40))
        _ = try await client.register(registration("slow", roles: [.decode], gbps: 10))
        let usual = try await client.choose(promptTokens: 500)
        #expect(usual.decode.name == "fast" && usual.prefill?.name == "compute" && usual.maxMigrations == 2)
        let moved = try await client.choose(promptTokens: 500, excluding: ["fast"])
        #expect(moved.decode.name == "slow" && moved.prefill?.name == "compute")
        let local = try await client.choose(promptTokens: 500, excluding: ["fast", "compute"])
        #expect(local.mode == .decodeOnly && local.decode.name == "slow")
        let none = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 5, excluding: ["fast", "slow"]) }
        #expect(none?.code == .unavailable)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("draining workers get no new requests")
    func drainingSkipped() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        _ = try await client.register(registration("a", roles: [.decode], gbps: 40))
        _ = try await client.register(registration("b", roles: [.decode], gbps: 10))
        #expect(try await client.heartbeat(HeartbeatRequest(name: "a", load: WorkerLoad(activeSequences: 4), draining: true)))
        for _ in 0..<4 { #expect(try await client.choose(promptTokens: 5).decode.name == "b") }
        #expect(try await client.status().workers.first?.status == "draining")
        #expect(try await client.heartbeat(HeartbeatRequest(name: "b", load: WorkerLoad(), draining: true)))
        let drained = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 5) }
        #expect(drained?.code == .unavailable)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("a burst between heartbeats spreads over equal workers")
    func burstSpreads() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        for name in ["a", "b"] { _ = try await client.register(registration(name, roles: [.decode])) }
        let names = try await withThrowingTaskGroup(of: String.self) { group in
            // Eight fill both queues to slo.max_queue_depth (4): placed requests count until a heartbeat.
            for _ in 0..<8 { group.addTask { try await client.choose(promptTokens: 5).decode.name } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(names.filter { $0 == "a" }.count == 4)
        #expect(try await client.status().workers.map(\.load.queueDepth) == [4, 4])
        await #expect(throws: ClusterError.self) { _ = try await client.choose(promptTokens: 5) }
        #expect(try await client.heartbeat(HeartbeatRequest(name: "a", load: WorkerLoad())))
        #expect(try await client.status().workers.map(\.load.queueDepth) == [0, 4])
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("clients without a certificate of the cluster CA are refused")
    func refusesForeignClients() async throws {
        let harness = try await PlacementHarness.start()
        let foreignAuthority = try ClusterCertificates.makeAuthority(name: "Some other CA")
        let foreign = ClusterCertificates.tls(node: try ClusterCertificates.issueNode("router", roles: [.router], authority: foreignAuthority),
                                              authorityPEM: foreignAuthority.certificatePEM)
        let stranger = PlacementClient(host: "127.0.0.1", port: harness.port, tls: foreign, timeout: .seconds(2))
        let refused = await #expect(throws: ClusterError.self) { try await stranger.status() }
        #expect(refused?.code == .unavailable)
        await stranger.close()
        let plaintext = PlacementClient(host: "127.0.0.1", port: harness.port, tls: nil, insecure: true, timeout: .seconds(2))
        await #expect(throws: ClusterError.self) { try await plaintext.status() }
        await plaintext.close()
        // The service still serves its own cluster afterwards.
        let member = try harness.client()
        #expect(try await member.status().workers.isEmpty)
        await member.close()
        await harness.stopAndRemove()
    }

    @Test("a membership log past its size limit is compacted at start and keeps every member")
    func compactsAtStart() async throws {
        let folder = try makeTemporaryFolder("placement-compact")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.log"
        do {
            let registry = try PlacementRegistry(logPath: path, policy: PlacementPolicy(), policyLoadedAt: Date(),
                                                 logger: quietLogger)
            _ = try await registry.register(registration("a", roles: [.decode], port: 7431))
            _ = try await registry.register(registration("b", roles: [.decode], port: 7432))
            for draining in [true, false, true, false, true] {
                try await registry.heartbeat(HeartbeatRequest(name: "a", load: WorkerLoad(), draining: draining))
            }
            try await registry.leave(LeaveRequest(name: "b"))
        }
        let before = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
        #expect(before == 10)
        let reopened = try PlacementRegistry(logPath: path, policy: PlacementPolicy(), policyLoadedAt: Date(),
                                             compactAfterEvents: 5, logger: quietLogger)
        let status = await reopened.status()
        #expect(status.events == 3)  // joined, role_assigned and the draining heartbeat of a
        #expect(status.workers.map(\.name) == ["a"])
        #expect(status.workers.first?.status == "draining")
        #expect(status.workers.first?.address?.port == 7431)
        #expect(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count == 3)
    }

    @Test("after a restart a restored worker has the workers' retry interval to check in, even with a shorter heartbeat timeout")
    func restartGrace() async throws {
        let folder = try makeTemporaryFolder("placement-grace")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.log"
        let policy = try PlacementPolicy.parse(yaml: "membership: {heartbeat_timeout_seconds: 0.5}\n", file: "policy.yaml")
        let now = Mutex(Date(timeIntervalSince1970: 1_000_000))
        let clock: @Sendable () -> Date = { now.withLock { $0 } }
        do {
            let registry = try PlacementRegistry(logPath: path, policy: policy, policyLoadedAt: Date(), logger: quietLogger, clock: clock)
            _ = try await registry.register(registration("restored", roles: [.decode], port: 7431))
        }
        let reopened = try PlacementRegistry(logPath: path, policy: policy, policyLoadedAt: Date(), logger: quietLogger, clock: clock)
        _ = try await reopened.register(registration("newcomer", roles: [.decode], port: 7432))
        now.withLock { $0 += 2 }
        #expect(await reopened.expire() == ["newcomer"], "a worker that registered since is held to the timeout")
        now.withLock { $0 += 3.1 }
        #expect(await reopened.expire() == ["restored"], "past the retry interval the restored one is lost too")
    }

    @Test("a policy file with an error fails the start with its file, line and key")
    func badPolicyAtStart() async throws {
        let error = await #expect(throws: ClusterError.self) {
            _ = try await PlacementHarness.start(policy: "slo:\n  max_queue_depth: -3\n")
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("policy.yaml:2:") == true)
        #expect(error?.message.contains("slo.max_queue_depth") == true)
    }

    @Test("the status table shows each worker's status, roles, address, ISA path, cores, profile, load and transports")
    func statusTable() {
        var profile = registration("decode-0").profile
        profile.isa = "avx2"
        let worker = ClusterStatus.Worker(
            name: "decode-0", status: "active", offeredRoles: [.decode, .prefill], assignedRoles: [.decode],
            address: WorkerAddress(host: "10.0.0.2", port: 7411, hostID: "b"), profile: profile,
            load: WorkerLoad(queueDepth: 1, activeSequences: 3, freeKVBlocks: 40, totalKVBlocks: 64),
            lastSeen: Date(timeIntervalSince1970: 0), transports: ["tls-h2", "shared-memory"])
        var cached = worker
        cached.name = "decode-1"
        cached.load.promptTokens = 800
        cached.load.cachedPromptTokens = 250
        cached.load.kvBytesShipped = 3 << 20
        cached.load.kvBytesNotShipped = 12_000_000
        let status = ClusterStatus(workers: [worker, cached], policyFile: "policy.yaml",
                                   policyLoadedAt: Date(timeIntervalSince1970: 86_400), events: 7)
        #expect(status.renderedTable() == """
            Policy: policy.yaml (loaded 1970-01-02T00:00:00Z)
            Membership log: 7 events; 2 workers
            NAME      STATUS  ROLES            ADDRESS        ISA   CORES  GFLOP/S  GB/S  QUEUE  ACTIVE  FREE KV  PREFIX HIT     KV SENT/SAVED  TRANSPORTS
            decode-0  active  decode,-prefill  10.0.0.2:7411  avx2      4      100    20      1       3    40/64           -                 -  tls-h2,shared-memory
            decode-1  active  decode,-prefill  10.0.0.2:7411  avx2      4      100    20      1       3    40/64         31%  3.0 MiB/11.4 MiB  tls-h2,shared-memory
            """)
    }
}
