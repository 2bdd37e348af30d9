import Foundation
import Testing
@testable import Placement

/// What the placement service needs from the pure membership model: addresses and model fingerprints that
/// survive a restart, draining, optimistic in-flight accounting, role assignment notes, log formats.
@Suite("Membership for the placement service")
struct MembershipServiceStateTests {
    let address = MemberAddress(host: "10.0.0.7", port: 7411, hostID: "box-a")

    func choose(_ tokens: Int, _ state: ClusterState, _ policy: PlacementPolicy = PlacementPolicy()) throws -> Decision {
        var rng = SeededGenerator(seed: 1)
        return try Placement.choose(promptTokens: tokens, state: state, policy: policy, rng: &rng)
    }

    @Test("a joined event keeps the worker's address and model fingerprint through the log")
    func addressSurvivesReplay() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.log"
        do {
            let log = try MembershipLog(path: path)
            try log.append(.joined(profile: profile("a"), roles: [.decode], address: address, modelFingerprint: "fp-1",
                                   at: epoch))
        }
        let line = try String(contentsOfFile: path, encoding: .utf8)
        #expect(line.contains(#""address":{"host":"10.0.0.7","host_id":"box-a","port":7411}"#))
        #expect(line.contains(#""format":2"#))
        #expect(line.contains(#""model_fingerprint":"fp-1""#))
        let worker = try #require(try MembershipLog(path: path).state.workers["a"])
        #expect(worker.address == address)
        #expect(worker.modelFingerprint == "fp-1")
        #expect(address.description == "10.0.0.7:7411")
    }

    @Test("a format-1 log (no format key, no address) still replays")
    func readsFormatOne() throws {
        let text = """
            {"event":"joined","profile":{"cores":4,"labels":{},"memory_free_bytes":1,"memory_read_gbps":20,"memory_total_bytes":2,"name":"a","sgemm_gflops":100,"transports":{"rdma_devices":[]}},"roles":["decode"],"time":1000000,"worker":"a"}
            {"event":"heartbeat","load":{"active_sequences":1,"free_kv_blocks":5,"queue_depth":0},"time":1000001,"worker":"a"}

            """
        let replay = try MembershipLog.replay(Data(text.utf8), file: "old.log")
        let worker = try #require(replay.state.workers["a"])
        #expect(worker.address == nil)
        #expect(worker.modelFingerprint == nil)
        #expect(worker.status == .active)
        #expect(worker.load.activeSequences == 1)
    }

    @Test("a line in a newer log format is refused with its line number, even as the last line")
    func refusesNewerFormat() throws {
        var data = try MembershipLog.encodeLine(.joined(profile: profile("a"), roles: [.decode], at: epoch))
        data.append(Data(#"{"event":"left","format":3,"time":1,"worker":"a"}"#.utf8))
        let error = placementError { _ = try MembershipLog.replay(data, file: "new.log") }
        #expect(error?.code == .unsupportedLogFormat)
        #expect(error?.location == .init(file: "new.log", line: 2))
        #expect(error?.message == "line 2 is in membership log format 3, but this build reads formats 1 to 2; run a newer baton")
    }

    @Test("a draining heartbeat takes the worker out of choices with a reason; a normal one brings it back")
    func draining() throws {
        var state = cluster([
            (profile("a", gbps: 40), [.decode], WorkerLoad()),
            (profile("b", gbps: 20), [.decode], WorkerLoad()),
        ])
        #expect(try choose(10, state).decode == "a")
        state.apply(.heartbeat(worker: "a", load: WorkerLoad(activeSequences: 3), draining: true, at: epoch.addingTimeInterval(1)))
        #expect(state.workers["a"]?.status == .draining)
        let decision = try choose(10, state)
        #expect(decision.decode == "b")
        let drained = try #require(decision.candidates.first { $0.worker == "a" })
        #expect(drained.outcome == .excluded)
        #expect(drained.reasons.contains("draining (finishing its requests, takes no new ones)"))
        state.apply(.heartbeat(worker: "b", load: WorkerLoad(), draining: true, at: epoch.addingTimeInterval(1)))
        #expect(try choose(10, state).admission.httpStatus == 503)
        state.apply(.heartbeat(worker: "a", load: WorkerLoad(), at: epoch.addingTimeInterval(2)))
        #expect(state.workers["a"]?.status == .active)
        #expect(try choose(10, state).decode == "a")
    }

    @Test("a draining worker that stops heartbeating is lost; the draining flag survives a snapshot")
    func drainingExpiresAndSnapshots() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a"), roles: [.decode], address: address, modelFingerprint: "fp", at: epoch))
        state.apply(.heartbeat(worker: "a", load: WorkerLoad(queueDepth: 1), draining: true, at: epoch.addingTimeInterval(1)))
        var rebuilt = ClusterState()
        for event in state.snapshotEvents { rebuilt.apply(event) }
        #expect(rebuilt == state)
        #expect(state.expire(now: epoch.addingTimeInterval(12), timeout: 10) == [.heartbeatLost(worker: "a", at: epoch.addingTimeInterval(12))])
    }

    @Test("placements count against workers until their next heartbeat, so a burst spreads")
    func optimisticPending() throws {
        var state = cluster([
            (profile("a"), [.decode], WorkerLoad()),
            (profile("b"), [.decode], WorkerLoad()),
        ])
        var picks: [String] = []
        for _ in 0..<6 {
            let decision = try choose(10, state)
            guard case .admit(let pair) = decision.admission else {
                Issue.record("not admitted: \(decision.admission)")
                return
            }
            picks.append(pair.decode)
            state.recordPlacement(pair)
        }
        #expect(picks == ["a", "b", "a", "b", "a", "b"])
        #expect(state.workers["a"]?.pending == 3)
        let scored = try choose(10, state).candidates.first { $0.worker == "a" }
        #expect(scored?.score?.load == 3.0 / 4)
        state.apply(.heartbeat(worker: "a", load: WorkerLoad(queueDepth: 1), at: epoch.addingTimeInterval(1)))
        #expect(state.workers["a"]?.pending == 0)
        #expect(try choose(10, state).candidates.first { $0.worker == "a" }?.score?.load == 1.0 / 4)
    }

    @Test("a worker doing both halves counts twice; under ttft_target pending requests raise its load but never refuse it")
    func pendingWeighsButDoesNotRefuse() throws {
        var policy = PlacementPolicy()
        policy.admission.policy = .ttftTarget
        policy.slo.maxQueueDepth = 4
        policy.disaggregation.minPromptTokens = 0
        var state = cluster([(profile("solo"), [.prefill, .decode], WorkerLoad(queueDepth: 1))])
        state.recordPlacement(WorkerPair(prefill: "solo", decode: "solo", link: .local))
        #expect(state.workers["solo"]?.pending == 2)
        #expect(try choose(100, state, policy).candidates.first?.score?.load == 0.75)
        for _ in 0..<3 { state.recordPlacement(WorkerPair(prefill: nil, decode: "solo", link: nil)) }
        let decision = try choose(100, state, policy)
        #expect(decision.admission.httpStatus == 200)
        #expect(decision.candidates.allSatisfy { $0.score?.load == 1 })
        state.apply(.heartbeat(worker: "solo", load: WorkerLoad(queueDepth: 4), at: epoch.addingTimeInterval(1)))
        #expect(try choose(100, state, policy).admission.httpStatus == 429)
    }

    @Test("under the queue policy requests placed since the last heartbeat count against the queue limit")
    func pendingFillsTheQueueUnderQueuePolicy() throws {
        var policy = PlacementPolicy()
        policy.slo.maxQueueDepth = 4
        policy.disaggregation.minPromptTokens = 0
        var state = cluster([(profile("solo"), [.prefill, .decode], WorkerLoad(queueDepth: 1))])
        for _ in 0..<2 { state.recordPlacement(WorkerPair(prefill: nil, decode: "solo", link: nil)) }
        #expect(try choose(100, state, policy).admission.httpStatus == 200, "1 queued + 2 placed < 4")
        state.recordPlacement(WorkerPair(prefill: nil, decode: "solo", link: nil))
        let full = try choose(100, state, policy)
        #expect(full.admission.httpStatus == 429)
        #expect(full.candidates.first?.reasons == ["queue depth 1 + 3 just placed ≥ slo.max_queue_depth 4"])
        state.apply(.heartbeat(worker: "solo", load: WorkerLoad(queueDepth: 2), at: epoch.addingTimeInterval(1)))
        #expect(try choose(100, state, policy).admission.httpStatus == 200, "the heartbeat reports the real queue")
    }

    @Test("a worker's slow recent TTFT refuses requests only under ttft_target")
    func ttftTargetIsAPolicyChoice() throws {
        var policy = PlacementPolicy()
        policy.disaggregation.minPromptTokens = 0
        let state = cluster([(profile("slow"), [.prefill, .decode], WorkerLoad(queueDepth: 2, recentTTFTMs: 9000))])
        #expect(try choose(100, state, policy).admission.httpStatus == 200, "the default queue policy ignores the TTFT target")
        policy.admission.policy = .ttftTarget
        let refused = try choose(100, state, policy)
        #expect(refused.admission.httpStatus == 429)
        #expect(refused.candidates.first?.reasons == ["recent TTFT 9000 ms > slo.ttft_ms 2000 with 2 queued"])
    }

    @Test("role assignment gives the offered roles the policy allows and says why the others were withheld")
    func assignmentNote() throws {
        let policy = try PlacementPolicy.parse(yaml: "prefill: {min_gflops: 200}\n")
        let weak = Placement.assignRoles(for: profile("weak", gflops: 50), offered: [.decode, .prefill], policy: policy)
        #expect(weak.roles == [.decode])
        #expect(weak.note == "offered decode, prefill; prefill withheld: sgemm 50 GFLOP/s < prefill.min_gflops 200")
        let strong = Placement.assignRoles(for: profile("strong", gflops: 300), offered: [.prefill], policy: policy)
        #expect(strong == RoleAssignment(roles: [.prefill], note: nil))
        #expect(Placement.assignableRoles(for: profile("weak", gflops: 50), offered: [.prefill], policy: policy).isEmpty)
    }

    @Test("the role assignment note is logged and read back")
    func assignmentNoteInLog() throws {
        let event = MembershipEvent.roleAssigned(worker: "a", roles: [.decode], note: "prefill withheld: x", at: epoch)
        let line = try MembershipLog.encodeLine(event)
        #expect(String(decoding: line, as: UTF8.self).contains(#""note":"prefill withheld: x""#))
        #expect(try MembershipLog.replay(line, file: "l").events == 1)
        let json = try #require(line.split(separator: UInt8(ascii: "\t")).first)
        #expect(try JSONDecoder().decode(MembershipEvent.self, from: Data(json)) == event)
    }

    @Test("the cluster's model fingerprint comes from the other members that are not lost")
    func clusterFingerprint() {
        var state = ClusterState()
        #expect(state.modelFingerprint(excluding: "a") == nil)
        state.apply(.joined(profile: profile("a"), roles: [.decode], address: address, modelFingerprint: "fp-1", at: epoch))
        #expect(state.modelFingerprint(excluding: "a") == nil)
        #expect(state.modelFingerprint(excluding: "b") == "fp-1")
        state.apply(.heartbeatLost(worker: "a", at: epoch.addingTimeInterval(20)))
        #expect(state.modelFingerprint(excluding: "b") == nil)
    }

    @Test("marking members seen gives every worker that is not lost a fresh heartbeat timeout")
    func markSeen() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a"), roles: [.decode], at: epoch))
        state.apply(.joined(profile: profile("b"), roles: [.decode], at: epoch))
        state.apply(.heartbeatLost(worker: "b", at: epoch.addingTimeInterval(11)))
        let restart = epoch.addingTimeInterval(100)
        state.markSeen(at: restart)
        #expect(state.workers["a"]?.lastSeen == restart)
        #expect(state.workers["b"]?.lastSeen == epoch)
        #expect(state.expire(now: restart.addingTimeInterval(5), timeout: 10).isEmpty)
    }
}
