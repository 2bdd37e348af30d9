import Foundation
import Placement
import Testing
@testable import Cluster

/// Four workers with different declared profiles kept registered by their `WorkerAgent`s, against a
/// placement service that applies a policy and is restarted under them.
@Suite("Placement with a loopback cluster", .serialized)
struct PlacementClusterTests {
    static let policy = """
        prefill: {min_gflops: 150}
        decode: {min_bandwidth_gbps: 10}
        disaggregation: {min_prompt_tokens: 64}
        membership: {heartbeat_timeout_seconds: 1.5}

        """

    /// prefill-1 is too slow for the policy's prefill pool; decode-1 has less bandwidth than decode-0.
    static let workers: [RegisterRequest] = [
        registration("prefill-0", roles: [.prefill], gflops: 400, gbps: 8, port: 7411),
        registration("prefill-1", roles: [.prefill, .decode], gflops: 100, gbps: 12, port: 7412),
        registration("decode-0", roles: [.decode], gflops: 60, gbps: 40, port: 7413),
        registration("decode-1", roles: [.decode], gflops: 60, gbps: 15, port: 7414),
    ]

    /// One running agent per worker, with the client it talks through.
    func startAgents(port: Int) throws -> [(task: Task<Void, Never>, client: PlacementClient)] {
        try Self.workers.map { request in
            let client = PlacementClient(host: "127.0.0.1", port: port, tls: try clusterTLS(request.profile.name),
                                         timeout: .seconds(2))
            let agent = WorkerAgent(client: client, registration: request, load: { WorkerLoad(freeKVBlocks: 100) },
                                    logger: quietLogger)
            return (Task { await agent.run() }, client)
        }
    }

    func allActive(_ client: ClusterClients) async -> Bool {
        guard let status = try? await client.status() else { return false }
        return status.workers.map(\.name) == ["decode-0", "decode-1", "prefill-0", "prefill-1"]
            && status.workers.allSatisfy { $0.status == "active" }
    }

    @Test("the policy's assignment holds, and restarts of placement (with or without its log) lose no worker")
    func assignmentAndRestarts() async throws {
        let first = try await PlacementHarness.start(policy: Self.policy)
        let port = first.port
        let agents = try startAgents(port: port)
        let admin = try first.client()
        #expect(await eventually { await allActive(admin) })

        let status = try await admin.status()
        #expect(status.workers.map(\.assignedRoles) == [[.decode], [.decode], [.prefill], [.decode]])
        let choice = try await admin.choose(promptTokens: 500)
        #expect(choice.mode == .disaggregated)
        #expect(choice.prefill?.name == "prefill-0")
        #expect(choice.prefill?.address.port == 7411)
        #expect(choice.decode.name == "decode-0")
        #expect(try await admin.choose(promptTokens: 8).mode == .decodeOnly)
        await admin.close()

        // Restart on the same state folder: the workers are known at once.
        // Stopping closes the agents' connections too, as a crashed process would.
        await first.stop(closing: agents.map(\.client))
        let second = try await PlacementHarness.start(policy: Self.policy, stateDirectory: first.stateDirectory, port: port)
        let again = try second.client()
        #expect(try await again.status().workers.count == 4)
        #expect(try await again.choose(promptTokens: 500).prefill?.name == "prefill-0")
        #expect(await eventually { await allActive(again) })
        await again.close()

        // Restart without the log: the agents find out (404 or a broken connection) and register again.
        await second.stop(closing: agents.map(\.client))
        let fresh = try makeTemporaryFolder("placement-fresh")
        let third = try await PlacementHarness.start(policy: Self.policy, stateDirectory: fresh, port: port)
        let last = try third.client()
        #expect(await eventually(timeout: .seconds(10)) { await allActive(last) })
        #expect(try await last.choose(promptTokens: 500).decode.name == "decode-0")
        await last.close()

        for agent in agents { agent.task.cancel() }
        for agent in agents { await agent.task.value }
        await third.stopAndRemove(closing: agents.map(\.client))
        try? FileManager.default.removeItem(atPath: first.stateDirectory)
    }
}
