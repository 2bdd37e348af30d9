import Cluster
import Foundation
import Placement
import Testing

@Suite("Placement explain and membership events")
struct PlacementExplainTests {
    @Test("explain shows every candidate's score and the choice, and changes nothing a real choice sees")
    func explainIsADryRun() async throws {
        let harness = try await PlacementHarness.start(policy: "balancing: {strategy: power_of_two, seed: 7}\n")
        let client = try harness.client()
        _ = try await client.register(registration("p", roles: [.prefill], gflops: 300))
        for name in ["d1", "d2", "d3"] { _ = try await client.register(registration(name, roles: [.decode])) }

        let first = try await client.explain(promptTokens: 300)
        #expect(first.decision.promptTokens == 300)
        #expect(Set(first.decision.candidates.map(\.worker)) == ["p", "d1", "d2", "d3"])
        #expect(first.decision.candidates.filter { $0.outcome == .chosen }.count == 2)
        #expect(first.text.contains("Placement of a 300-token prompt"))
        guard case .admit(let pair) = first.decision.admission else {
            Issue.record("expected an admission, got \(first.decision.admission)")
            return
        }
        // Asking again gives the same answer: the random draw did not advance and no load was counted.
        for _ in 0..<3 { #expect(try await client.explain(promptTokens: 300) == first) }
        #expect(try await client.status().workers.allSatisfy { $0.load.queueDepth == 0 })
        // And the next real choice is the one explained.
        let chosen = try await client.choose(promptTokens: 300)
        #expect(chosen.decode.name == pair.decode && chosen.prefill?.name == pair.prefill)
        #expect(try await client.status().workers.map(\.load.queueDepth).reduce(0, +) == 2)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("explain answers 400 for a negative prompt length")
    func explainRefusesNegativeLengths() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        _ = try await client.register(registration("w"))
        let error = await #expect(throws: ClusterError.self) { try await client.explain(promptTokens: -1) }
        #expect(error?.code == .rejected)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("the status lists recent membership events with what changed, oldest first")
    func statusListsRecentEvents() async throws {
        let harness = try await PlacementHarness.start(policy: "membership: {heartbeat_timeout_seconds: 0.3}\n")
        let client = try harness.client()
        _ = try await client.register(registration("a", roles: [.decode], port: 7501))
        #expect(try await eventually { try await client.status().workers.first?.status == "lost" })
        #expect(try await client.heartbeat(HeartbeatRequest(name: "a", load: WorkerLoad())))
        try await client.leave(name: "a")
        let events = try #require(try await client.status().recentEvents)
        #expect(events.map(\.event) == ["joined", "role_assigned", "heartbeat_lost", "heartbeat", "left"])
        #expect(events.allSatisfy { $0.worker == "a" })
        #expect(events[0].detail == "offers decode at 127.0.0.1:7501")
        #expect(events[1].detail == "roles decode")
        #expect(events[2].detail == "no heartbeat for 0.30 s")
        #expect(events[3].detail == "active")
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.time <= $1.time })
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("the status keeps only the latest events")
    func recentEventsAreBounded() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        for index in 0..<(PlacementRegistry.recentEventLimit / 2 + 5) {
            _ = try await client.register(registration("w\(index)", roles: [.decode]))
        }
        let events = try #require(try await client.status().recentEvents)
        #expect(events.count == PlacementRegistry.recentEventLimit)
        #expect(events.last?.worker == "w\(PlacementRegistry.recentEventLimit / 2 + 4)")
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("a status without recent events (an older service) still decodes")
    func olderStatusDecodes() throws {
        let json = #"{"workers": [], "policy_file": "p.yaml", "policy_loaded_at": "2026-01-01T00:00:00Z", "events": 3}"#
        let status = try PlacementJSON.decode(ClusterStatus.self, from: Array(json.utf8))
        #expect(status.recentEvents == nil && status.events == 3)
    }
}
