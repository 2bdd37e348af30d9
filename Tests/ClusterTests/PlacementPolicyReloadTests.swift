import Foundation
import Placement
import Synchronization
import Testing
@testable import Cluster

/// `clients` tasks calling choose back to back until stopped, counting answers per decode worker and
/// every failure.
final class ChooseLoad: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let failureList = Mutex<[String]>([])
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(client: ClusterClients, clients: Int = 4) {
        let started = (0..<clients).map { _ in
            Task { [self] in
                while !Task.isCancelled {
                    do {
                        let name = try await client.choose(promptTokens: 5).decode.name
                        counts.withLock { $0[name, default: 0] += 1 }
                    } catch {
                        // A call cut short by `stop` is not a failed request.
                        if Task.isCancelled { break }
                        failureList.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        tasks.withLock { $0 = started }
    }

    func stop() async {
        let running = tasks.withLock { $0 }
        for task in running { task.cancel() }
        for task in running { await task.value }
    }

    func count(_ name: String) -> Int { counts.withLock { $0[name] ?? 0 } }
    var failures: [String] { failureList.withLock { $0 } }
}

/// Policy reloads while requests keep coming: by file change, by the SIGHUP path, and a bad edit.
@Suite("Placement policy reload", .serialized)
struct PlacementPolicyReloadTests {
    // Nothing heartbeats here, so requests placed would count as queued forever under the queue policy;
    // ttft_target goes by reported queues only, which is what a stream of choices without workers needs.
    static let onlyA = "decode: {workers: [a]}\nadmission: {policy: ttft_target}\n"
    static let onlyB = "decode: {workers: [b]}\nadmission: {policy: ttft_target}\n"

    func write(_ text: String, to path: String) throws {
        // Replace by rename, as editors and ConfigMap updates do: readers never see a half-written file.
        let temporary = path + ".tmp"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    @Test("an edited policy file takes effect without a failed request; a bad edit keeps the old policy")
    func reloadOnFileChange() async throws {
        let harness = try await PlacementHarness.start(policy: Self.onlyA)
        let policyFile = try #require(harness.policyFile)
        let client = try harness.client()
        for name in ["a", "b"] { _ = try await client.register(registration(name, roles: [.decode])) }
        #expect(try await client.status().workers.map(\.assignedRoles) == [[.decode], []])
        let firstLoad = await harness.service.registry.currentPolicy.loadedAt

        let load = ChooseLoad(client: client)
        #expect(await eventually { load.count("a") > 20 })
        try write(Self.onlyB, to: policyFile)
        #expect(await eventually { load.count("b") > 20 })
        let status = try await client.status()
        #expect(status.workers.map(\.assignedRoles) == [[], [.decode]])
        // The wire's ISO 8601 times have whole seconds: compare the registry's own clock reading.
        let secondLoad = await harness.service.registry.currentPolicy.loadedAt
        #expect(secondLoad > firstLoad)

        // A bad edit: logged, the old policy (only b) stays in force.
        try write("decode: {workerz: [a]}\n", to: policyFile)
        try await Task.sleep(for: .milliseconds(400))
        let before = load.count("a")
        try await Task.sleep(for: .milliseconds(300))
        #expect(load.count("a") == before)
        #expect(await harness.service.registry.currentPolicy.loadedAt == secondLoad)
        await load.stop()
        #expect(load.failures == [])
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("the SIGHUP path reloads on demand and reports a bad file with its line and key")
    func reloadOnDemand() async throws {
        // A poll interval far beyond the test, so only the explicit reload can change the policy.
        let harness = try await PlacementHarness.start(policy: Self.onlyA, pollInterval: .seconds(3600))
        let policyFile = try #require(harness.policyFile)
        let client = try harness.client()
        for name in ["a", "b"] { _ = try await client.register(registration(name, roles: [.decode])) }
        let load = ChooseLoad(client: client)
        #expect(await eventually { load.count("a") > 10 })

        try write("\n\ndecode:\n  min_gflops: lots\n", to: policyFile)
        let failure = await harness.service.reloadPolicy()
        guard case .failure(let error) = failure else {
            Issue.record("a bad policy file was accepted")
            return
        }
        #expect(error.location?.line == 4)
        #expect(error.location?.key == "decode.min_gflops")
        #expect(try await client.choose(promptTokens: 5).decode.name == "a")
        let failed = try await client.status()
        #expect(failed.policyError?.contains("decode.min_gflops") == true, "the status says the reload failed and why")
        #expect(failed.renderedTable().contains("Policy reload FAILED"))

        try write(Self.onlyB, to: policyFile)
        guard case .success = await harness.service.reloadPolicy() else {
            Issue.record("a good policy file was refused")
            return
        }
        #expect(try await client.choose(promptTokens: 5).decode.name == "b")
        #expect(try await client.status().policyError == nil, "a good load clears the failure")
        #expect(await eventually { load.count("b") > 10 })
        await load.stop()
        #expect(load.failures == [])
        await client.close()
        await harness.stopAndRemove()
    }
}
