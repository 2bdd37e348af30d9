import Foundation
import Generation
import Testing

@testable import Placement

/// Placement with prefix caches: cached overlap against load, the split only where it pays, the explanation, and
/// the router's own accounting that keeps a burst from herding.
@Suite("Prefix-aware placement")
struct PrefixPlacementTests {
    /// One prefill worker and two equal decode workers, d1 and d2.
    static func topology(prefillQueue: Int = 0, d1: WorkerLoad = WorkerLoad(), d2: WorkerLoad = WorkerLoad()) -> ClusterState {
        cluster([
            (profile("p", gflops: 400, gbps: 10), [.prefill], WorkerLoad(queueDepth: prefillQueue)),
            (profile("d1", gflops: 80, gbps: 40), [.decode], d1),
            (profile("d2", gflops: 80, gbps: 40), [.decode], d2),
        ])
    }

    static func choose(_ tokens: Int, _ state: ClusterState, _ policy: PlacementPolicy = PlacementPolicy(),
                       prefix: PrefixMatch = .none) throws -> Decision {
        var rng = SeededGenerator(seed: 1)
        return try Placement.choose(promptTokens: tokens, state: state, policy: policy, prefix: prefix, rng: &rng)
    }

    @Test("a decode worker holding most of the prompt wins over an idle one until its load outweighs the cache")
    func overlapAgainstLoad() throws {
        let prompt: [Int32] = (0..<640).map { Int32($0 % 500 + 10) }
        var index = PrefixIndex()
        let held = PrefixHash.chain(prompt, blockSize: 16, namespace: PromptPath.prefill.prefixNamespace).prefix(35)
        index.apply(KVEventBatch(incarnation: "1-0000000000000001", sequence: 1, reset: true, blockSize: 16,
                                 decode: .init(stored: Array(held)), prefill: nil), from: "d2")
        let prefix = PrefixMatch(prompt: prompt, index: index)
        #expect(prefix.cachedTokens(worker: "d2", cache: .decode, path: .prefill) == 560)
        let policy = PlacementPolicy()
        // d2 has two queued of four (load 0.5): 1 + 560/640 − 0.5·0.5 beats d1's idle 1.
        let busy = Self.topology(d2: WorkerLoad(queueDepth: 2))
        let decision = try Self.choose(640, busy, policy, prefix: prefix)
        #expect(decision.decode == "d2")
        let d2 = try #require(decision.candidates.first { $0.worker == "d2" && $0.role == .decode }?.score)
        #expect(d2.cachedTokens == 560 && d2.cache == 0.875 && d2.load == 0.5)
        #expect(abs(d2.score - (1 + 0.875 - 0.25)) < 1e-9)
        // 80 uncached tokens are no fewer than min_uncached_tokens (min_prompt_tokens, 64): the split still pays.
        #expect(decision.mode == .disaggregated && decision.prefill == "p")
        // Weighing load more, or the cache not at all, sends it to the idle worker.
        var heavy = policy
        heavy.scoring.decode.load = 3
        #expect(try Self.choose(640, busy, heavy, prefix: prefix).decode == "d1")
        var blind = policy
        blind.scoring.decode.cache = 0
        #expect(try Self.choose(640, busy, blind, prefix: prefix).decode == "d1")
        // Nothing known of the caches: the idle worker.
        #expect(try Self.choose(640, busy, policy).decode == "d1")
    }

    @Test("a decode worker holding all but a short suffix prefills it itself; the prefill queue widens what counts as short")
    func uncachedRule() throws {
        var policy = PlacementPolicy()
        policy.disaggregation.minUncachedTokens = 100
        policy.disaggregation.prefillQueueFactor = 1
        let state = Self.topology()
        let local = try Self.choose(1000, state, policy, prefix: PrefixMatch(promptTokens: 1000, assuming: ["d1": 960]))
        #expect(local.mode == .decodeOnly && local.modeRule == "disaggregation.min_uncached_tokens")
        #expect(local.admission == .admit(WorkerPair(prefill: nil, decode: "d1", link: nil)))
        #expect(local.modeReason.contains("leaving 40 uncached") && local.modeReason.contains("d1 prefills the rest itself"))
        #expect(local.candidates.contains { $0.role == .prefill && $0.worker == "p" && $0.outcome == .ranked })

        let split = try Self.choose(1000, state, policy, prefix: PrefixMatch(promptTokens: 1000, assuming: ["d1": 800]))
        #expect(split.mode == .disaggregated && split.modeRule == "disaggregation.min_prompt_tokens")
        #expect(split.prefill == "p" && split.decode == "d1")
        #expect(split.modeReason.contains("the split pays"))

        // 200 uncached against 100 × (1 + 1 × queued): one queued request is not enough, two are.
        let queued1 = try Self.choose(1000, Self.topology(prefillQueue: 1), policy,
                                      prefix: PrefixMatch(promptTokens: 1000, assuming: ["d1": 800]))
        #expect(queued1.mode == .disaggregated)
        let queued2 = try Self.choose(1000, Self.topology(prefillQueue: 2), policy,
                                      prefix: PrefixMatch(promptTokens: 1000, assuming: ["d1": 800]))
        #expect(queued2.mode == .decodeOnly && queued2.decode == "d1")
        // Without the setting, an uncached prompt splits exactly as min_prompt_tokens says, even at its threshold.
        let plain = try Self.choose(64, state)
        #expect(plain.mode == .disaggregated && plain.modeRule == "disaggregation.min_prompt_tokens")
        #expect(try Self.choose(63, state).mode == .decodeOnly)
        // Nor does the default policy look at the prefill queue.
        #expect(try Self.choose(64, Self.topology(prefillQueue: 3)).mode == .disaggregated)
    }

    @Test("the explanation shows each candidate's cached tokens, why the winner won, and the rule that decided the mode")
    func explainShowsOverlap() throws {
        var policy = PlacementPolicy()
        policy.disaggregation.minUncachedTokens = 100
        let decision = try Self.choose(1000, Self.topology(d1: WorkerLoad(freeKVBlocks: 90, totalKVBlocks: 100)), policy,
                                       prefix: PrefixMatch(promptTokens: 1000, assuming: ["d1": 960]))
        let text = decision.explainText(policy: policy)
        #expect(text.contains("Mode: decode_only (rule disaggregation.min_uncached_tokens)"))
        #expect(text.contains("+ 1·cache − 0.50·load"))
        #expect(text.contains("cache  0.960 (960 tok)"))
        #expect(text.contains("Why decode: d1 scored 1.91 (compute +0.00, bandwidth +1.00, cache +0.96 (960 of 1000 tokens cached), load −0.05)"))
        #expect(text.contains("against d2's 1.00"))
        #expect(text.contains("Prefill candidates"), "the prefill side is shown although the decode worker runs it alone")
        let json = try decision.explainJSON()
        #expect(json.contains("\"mode_rule\" : \"disaggregation.min_uncached_tokens\""))
        #expect(json.contains("\"cached_tokens\" : 960"))
    }

    @Test("running and just-placed sequences fill a decode worker's batch, which is part of its load")
    func batchIsLoad() throws {
        var busy = WorkerLoad(activeSequences: 3)
        busy.maxSequences = 8
        var idle = WorkerLoad()
        idle.maxSequences = 8
        var view = MembershipView()
        view.install(Self.topology(d1: busy, d2: idle), policy: PlacementPolicy(), version: 1, placementIncarnation: "p1", at: epoch)
        var rng = SeededGenerator(seed: 1)
        // Each starts at once (no longer queued), but runs: three placed on d2 since its last heartbeat weigh as
        // d1's three running, and then the name decides.
        let first = try view.choose(promptTokens: 20, at: epoch, rng: &rng)
        #expect(first.decode == "d2")
        #expect(first.candidates.first { $0.worker == "d1" }?.score?.load == 3.0 / 8)
        view.release(WorkerPair(prefill: nil, decode: "d2", link: nil))
        for _ in 0..<2 {
            #expect(try view.choose(promptTokens: 20, at: epoch, rng: &rng).decode == "d2")
            view.release(WorkerPair(prefill: nil, decode: "d2", link: nil))
        }
        #expect(view.state.workers["d2"]?.assigned == 3)
        let fourth = try view.choose(promptTokens: 20, at: epoch, rng: &rng)
        #expect(fourth.candidates.first { $0.worker == "d2" }?.score?.load == 3.0 / 8)
        #expect(fourth.decode == "d1")
    }

    @Test("a burst between heartbeats spreads over two idle decode workers, in both admission modes")
    func burstSpreads() throws {
        for admission in PlacementPolicy.AdmissionPolicy.allCases {
            for reportsKV in [true, false] {
                var policy = PlacementPolicy()
                policy.admission.policy = admission
                // Workers report their KV blocks, or only their decode batch: either way placed work is load.
                var idle = WorkerLoad(freeKVBlocks: 1024, totalKVBlocks: 1024)
                if !reportsKV { idle = WorkerLoad(); idle.maxSequences = 8 }
                var view = MembershipView()
                view.install(Self.topology(d1: idle, d2: idle), policy: policy, version: 1, placementIncarnation: "p1", at: epoch)
                var rng = SeededGenerator(seed: 1)
                var counts: [String: Int] = [:]
                for _ in 0..<6 {
                    // Short prompts run decode-only; each starts at once (the router uncounts it as queued).
                    let decision = try view.choose(promptTokens: 20, reservedTokens: 84, at: epoch, rng: &rng)
                    guard case .admit(let pair) = decision.admission else {
                        Issue.record("not admitted under \(admission): \(decision.admission)")
                        return
                    }
                    view.release(pair)
                    counts[pair.decode, default: 0] += 1
                }
                #expect(counts == ["d1": 3, "d2": 3], "\(admission), KV reported: \(reportsKV)")
                // The next heartbeats report the real load; the router's own count ends there.
                let later = Self.topology(d1: idle, d2: idle).applying(.heartbeat(worker: "d1", load: idle, at: epoch.addingTimeInterval(1)))
                view.install(later, policy: policy, version: 1, placementIncarnation: "p1", at: epoch)
                #expect(view.state.workers["d1"]?.assigned == 0 && view.state.workers["d2"]?.assigned == 3)
            }
        }
    }
}
