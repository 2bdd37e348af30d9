import Foundation
import Testing

@testable import Placement

/// A router's local view: choices from placement's snapshot, its own placements, its own failure marks.
@Suite("Membership view")
struct MembershipViewTests {
    static func snapshot(_ loads: [String: WorkerLoad], seenAt: Date = epoch, incarnations: [String: String] = [:]) -> ClusterState {
        var state = ClusterState()
        for (name, load) in loads.sorted(by: { $0.key < $1.key }) {
            state.apply(.joined(profile: profile(name), roles: [.decode],
                                address: MemberAddress(host: "127.0.0.1", port: 7400, hostID: name),
                                incarnation: incarnations[name] ?? "1-0000000000000001", at: epoch))
            state.apply(.heartbeat(worker: name, load: load, at: seenAt))
        }
        return state
    }

    static var policy: PlacementPolicy {
        var policy = PlacementPolicy()
        policy.slo.maxQueueDepth = 2
        return policy
    }

    @Test("choices count the router's own placements until a heartbeat after them arrives")
    func ownPlacementsCount() throws {
        var view = MembershipView()
        var rng = SeededGenerator(seed: 1)
        view.install(Self.snapshot(["a": WorkerLoad()]), policy: Self.policy, version: 5, placementIncarnation: "p1", at: epoch)
        #expect(view.version == 5 && view.hasSnapshot)
        for _ in 0..<2 { #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).admission.httpStatus == 200) }
        #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).admission.httpStatus == 429, "2 just placed fill a queue of 2")
        // The same heartbeat again (a push with nothing new about a) keeps the count.
        view.install(Self.snapshot(["a": WorkerLoad()]), policy: Self.policy, version: 5, placementIncarnation: "p1", at: epoch)
        #expect(view.state.workers["a"]?.pending == 2)
        // A later heartbeat reports the real queue: one of the two already runs.
        view.install(Self.snapshot(["a": WorkerLoad(queueDepth: 1)], seenAt: epoch.addingTimeInterval(1)), policy: Self.policy,
                     version: 5, placementIncarnation: "p1", at: epoch)
        #expect(view.state.workers["a"]?.pending == 0)
        #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).admission.httpStatus == 200)
    }

    @Test("a started request frees its place, and stale loads give way to the router's own count")
    func releaseAndStaleLoads() throws {
        var view = MembershipView()
        var rng = SeededGenerator(seed: 1)
        view.install(Self.snapshot(["a": WorkerLoad(queueDepth: 1)]), policy: Self.policy, version: 1,
                     placementIncarnation: "p1", at: epoch)
        let decision = try view.choose(promptTokens: 10, at: epoch, rng: &rng)
        guard case .admit(let pair) = decision.admission else {
            Issue.record("not admitted: \(decision.admission)")
            return
        }
        #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).admission.httpStatus == 429, "1 queued + 1 placed")
        view.release(pair)
        #expect(view.state.workers["a"]?.pending == 0)
        view.release(pair)
        #expect(view.state.workers["a"]?.pending == 0, "never below zero")
        // Placement unreachable: no snapshot for longer than staleLoadSeconds, so the reported queue of 1 (frozen)
        // no longer counts; this router's own placements do.
        let later = epoch.addingTimeInterval(MembershipView.staleLoadSeconds + 1)
        #expect(view.effectiveState(at: later).workers["a"]?.load.queueDepth == 0)
        #expect(view.effectiveState(at: epoch).workers["a"]?.load.queueDepth == 1)
        for _ in 0..<2 { #expect(try view.choose(promptTokens: 10, at: later, rng: &rng).admission.httpStatus == 200) }
        #expect(try view.choose(promptTokens: 10, at: later, rng: &rng).admission.httpStatus == 429)
    }

    @Test("a worker the router saw fail is avoided until a heartbeat after the failure, a new process, or the timeout")
    func failureMarks() throws {
        var view = MembershipView()
        var rng = SeededGenerator(seed: 1)
        let loads = ["a": WorkerLoad(), "b": WorkerLoad(queueDepth: 1)]
        view.install(Self.snapshot(loads), policy: Self.policy, version: 1, placementIncarnation: "p1", at: epoch)
        #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).decode == "a")
        view.markFailed("a", at: epoch.addingTimeInterval(2))
        #expect(try view.choose(promptTokens: 10, at: epoch.addingTimeInterval(3), rng: &rng).decode == "b")
        let lost = view.effectiveState(at: epoch.addingTimeInterval(3)).workers["a"]?.status
        #expect(lost == .lost)
        // Placement unreachable: no news, but after one heartbeat timeout (10 s) the router tries a again.
        #expect(view.effectiveState(at: epoch.addingTimeInterval(12.5)).workers["a"]?.status == .active)
        // News of the same process from before the failure keeps the mark; a heartbeat after it ends it.
        view.install(Self.snapshot(loads, seenAt: epoch.addingTimeInterval(1)), policy: Self.policy, version: 2,
                     placementIncarnation: "p1", at: epoch)
        #expect(view.failures["a"] != nil)
        view.install(Self.snapshot(loads, seenAt: epoch.addingTimeInterval(4)), policy: Self.policy, version: 2,
                     placementIncarnation: "p1", at: epoch)
        #expect(view.failures["a"] == nil)
        // A restarted worker (new incarnation) is a new process: the old mark does not apply to it.
        view.markFailed("b", at: epoch.addingTimeInterval(5))
        view.install(Self.snapshot(loads, seenAt: epoch.addingTimeInterval(4), incarnations: ["b": "9-0000000000000009"]),
                     policy: Self.policy, version: 3, placementIncarnation: "p1", at: epoch)
        #expect(view.failures["b"] == nil)
    }

    @Test("choosing before any snapshot answers unavailable, never a worker")
    func emptyView() throws {
        var view = MembershipView()
        var rng = SeededGenerator(seed: 1)
        #expect(!view.hasSnapshot)
        #expect(try view.choose(promptTokens: 10, at: epoch, rng: &rng).admission.httpStatus == 503)
    }

    @Test("incarnations order by start time and round-trip through text; malformed ones do not parse")
    func incarnations() {
        let early = WorkerIncarnation(startedMs: 1_700_000_000_000, random: 0xABC)
        let late = WorkerIncarnation(startedMs: 1_700_000_000_001, random: 1)
        #expect(early < late)
        #expect(early.description == "1700000000000-0000000000000abc")
        #expect(WorkerIncarnation(early.description) == early)
        for bad in ["", "12", "x-0000000000000001", "12-abc", "-1-0000000000000001", "12-00000000000000000"] {
            #expect(WorkerIncarnation(bad) == nil, "\(bad)")
        }
        #expect(WorkerIncarnation.now() != WorkerIncarnation.now())
    }

    @Test("the admission section parses, defaults to queue, and names a bad value's key")
    func admissionPolicy() throws {
        #expect(PlacementPolicy().admission == PlacementPolicy.Admission())
        #expect(PlacementPolicy().admission.policy == .queue)
        let policy = try PlacementPolicy.parse(yaml: "admission: {policy: ttft_target, max_waiting: 3, max_wait_seconds: 9.5}\n")
        #expect(policy.admission.policy == .ttftTarget && policy.admission.maxWaiting == 3 && policy.admission.maxWaitSeconds == 9.5)
        let error = placementError { _ = try PlacementPolicy.parse(yaml: "admission:\n  policy: refuse\n", file: "p.yaml") }
        #expect(error?.location?.key == "admission.policy")
        #expect(error?.location?.line == 2)
    }
}
