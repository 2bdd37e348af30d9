import Cluster
import Foundation
import Generation
import Placement
import Synchronization
import Testing

/// KV events end to end in the control plane: workers' batches in heartbeats, placement's index, the batches the
/// membership watch forwards to routers, and the routers' replica.
@Suite("Prefix index over heartbeats and the membership watch")
struct PrefixEventsTests {
    static let incarnation = "1000-00000000000000aa"
    static let prompt: [Int32] = (0..<200).map { Int32($0 + 1) }
    static let hashes = PrefixHash.chain(prompt, blockSize: 16, namespace: PromptPath.prefill.prefixNamespace)

    static func batch(_ sequence: UInt64, reset: Bool = false, stored: [UInt64] = [], removed: [UInt64] = []) -> KVEventBatch {
        KVEventBatch(incarnation: incarnation, sequence: sequence, reset: reset, blockSize: 16,
                     decode: .init(stored: stored, removed: removed), prefill: nil)
    }

    static func heartbeat(_ name: String, _ batch: KVEventBatch?) -> HeartbeatRequest {
        HeartbeatRequest(name: name, load: WorkerLoad(), incarnation: incarnation, kvEvents: batch)
    }

    @Test("placement indexes heartbeats' batches, asks for a reset when it trusts nothing, and routers replicate it")
    func registryAndReplica() async throws {
        let folder = try makeTemporaryFolder("placement-prefix")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let now = Mutex(Date(timeIntervalSince1970: 1_000_000))
        let clock: @Sendable () -> Date = { now.withLock { $0 } }
        let registry = try PlacementRegistry(logPath: folder + "/membership.log", policy: PlacementPolicy(),
                                             policyLoadedAt: Date(), logger: quietLogger, clock: clock)
        for (name, port) in [("d1", 7441), ("d2", 7442)] {
            var request = registration(name, roles: [.decode], port: port)
            request.incarnation = Self.incarnation
            _ = try await registry.register(request)
        }
        let first = try await registry.heartbeat(Self.heartbeat("d2", Self.batch(1, reset: true, stored: Array(Self.hashes.prefix(10)))))
        #expect(first == HeartbeatResponse(resetKVEvents: false))
        #expect(try await registry.heartbeat(Self.heartbeat("d1", nil)) == HeartbeatResponse(resetKVEvents: true),
                "nothing known of d1's caches: it should send everything")

        // The explanation with the prompt's ids counts d2's 160 cached tokens; the real choice follows it.
        let explained = try await registry.explain(promptTokens: Self.prompt.count, prompt: Self.prompt)
        #expect(explained.decision.decode == "d2")
        #expect(explained.decision.candidates.first { $0.worker == "d2" }?.score?.cachedTokens == 160)
        #expect(explained.text.contains("(160 tok)"))
        #expect(try await registry.explain(promptTokens: Self.prompt.count).decision.decode == "d1", "without ids: by name")
        await #expect(throws: ClusterError.self) { _ = try await registry.explain(promptTokens: 5, prompt: Self.prompt) }

        // A router's replica: the whole index first, then only what arrived since.
        var view = MembershipView()
        let full = await registry.snapshot()
        #expect(full.prefix?.full == true && full.prefix?.batches.map(\.worker) == ["d2"])
        view.install(full.state, policy: full.policy, version: full.version, placementIncarnation: full.placementIncarnation,
                     prefix: full.prefix, at: clock())
        _ = try await registry.heartbeat(Self.heartbeat("d2", Self.batch(2, stored: Array(Self.hashes[10...]))))
        let next = await registry.snapshot(prefixSince: full.prefix?.position)
        #expect(next.prefix?.full == false && next.prefix?.batches.map(\.batch.sequence) == [2])
        view.install(next.state, policy: next.policy, version: next.version, placementIncarnation: next.placementIncarnation,
                     prefix: next.prefix, at: clock())
        #expect(view.prefixIndex.workers == (await registry.prefixIndex.workers))
        #expect(view.prefixIndex.workers["d2"]?.decode.count == Self.hashes.count)
        var rng = SeededGenerator(seed: 1)
        #expect(try view.choose(promptTokens: Self.prompt.count, prompt: Self.prompt, at: clock(), rng: &rng).decode == "d2")

        // A lost batch (3 never arrives): both drop d2, and placement asks for a reset.
        let gap = try await registry.heartbeat(Self.heartbeat("d2", Self.batch(4, stored: [])))
        #expect(gap.resetKVEvents)
        let afterGap = await registry.snapshot(prefixSince: next.prefix?.position)
        view.install(afterGap.state, policy: afterGap.policy, version: afterGap.version,
                     placementIncarnation: afterGap.placementIncarnation, prefix: afterGap.prefix, at: clock())
        #expect(await registry.prefixIndex.workers["d2"] == nil && view.prefixIndex.workers["d2"] == nil)
        #expect(await registry.status().workers.first { $0.name == "d2" }?.indexedBlocks == nil)
        _ = try await registry.heartbeat(Self.heartbeat("d2", Self.batch(5, reset: true, stored: Array(Self.hashes.prefix(3)))))
        #expect(await registry.status().workers.first { $0.name == "d2" }?.indexedBlocks == 3)

        // A lost worker's entries are dropped at once.
        now.withLock { $0 += 30 }
        _ = await registry.expire()
        #expect(await registry.prefixIndex.workers.isEmpty)
    }

    @Test("a worker agent publishes its caches with its heartbeats, and a watching router's replica follows")
    func agentPublishes() async throws {
        let harness = try await PlacementHarness.start(policy: "membership: {heartbeat_timeout_seconds: 0.6}\n")
        let admin = try harness.client()
        let agentClient = try harness.client(node: "decode-0")
        let held = Mutex<Set<UInt64>>(Set(Self.hashes.prefix(4)))
        var request = registration("decode-0", roles: [.decode])
        request.incarnation = Self.incarnation
        let agent = WorkerAgent(
            client: agentClient, registration: request, load: { WorkerLoad() },
            caches: WorkerAgent.PrefixCaches(blockSize: 16) { KVEventSource.Contents(decode: held.withLock { $0 }, prefill: nil) },
            logger: quietLogger)
        let running = Task { await agent.run() }
        #expect(try await eventually { try await admin.status().workers.first?.indexedBlocks == 4 })
        held.withLock { $0 = Set(Self.hashes) }
        #expect(try await eventually { try await admin.status().workers.first?.indexedBlocks == Self.hashes.count })

        let stream = try await admin.watch()
        var view = MembershipView()
        var rng = SeededGenerator(seed: 1)
        var chose: String?
        for _ in 0..<10 {
            guard let snapshot = try await stream.next() else { break }
            view.install(snapshot.state, policy: snapshot.policy, version: snapshot.version,
                         placementIncarnation: snapshot.placementIncarnation, prefix: snapshot.prefix, at: Date())
            if view.prefixIndex.workers["decode-0"]?.decode.count == Self.hashes.count {
                let decision = try view.choose(promptTokens: Self.prompt.count, prompt: Self.prompt, at: Date(), rng: &rng)
                chose = decision.candidates.first { $0.worker == "decode-0" }?.score?.cachedTokens.description
                break
            }
        }
        #expect(chose == "192")
        stream.cancel()
        running.cancel()
        await running.value
        await admin.close()
        await harness.stopAndRemove(closing: [agentClient])
    }
}
