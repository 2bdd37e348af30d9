import Foundation
import Testing
@testable import Placement

@Suite("Placement decisions")
struct PlacementChooseTests {
    /// A compute box (fast sgemm, slow memory) and a bandwidth box (the reverse), both offering both roles.
    let mixed = cluster([
        (profile("compute", gflops: 400, gbps: 10), [.prefill, .decode], WorkerLoad()),
        (profile("bandwidth", gflops: 80, gbps: 40), [.prefill, .decode], WorkerLoad()),
    ])

    func choose(_ tokens: Int = 1000, _ state: ClusterState, _ policy: PlacementPolicy = PlacementPolicy(),
                seed: UInt64 = 1) throws -> Decision {
        var rng = SeededGenerator(seed: seed)
        return try Placement.choose(promptTokens: tokens, state: state, policy: policy, rng: &rng)
    }

    func candidate(_ decision: Decision, _ name: String, _ role: WorkerRole) -> Decision.Candidate? {
        decision.candidates.first { $0.worker == name && $0.role == role }
    }

    @Test("compute wins prefill and bandwidth wins decode under the default weights")
    func defaultScoring() throws {
        let decision = try choose(1000, mixed)
        #expect(decision.mode == .disaggregated)
        #expect(decision.admission == .admit(WorkerPair(prefill: "compute", decode: "bandwidth", link: .tcp)))
        #expect(candidate(decision, "compute", .prefill)?.outcome == .chosen)
        #expect(candidate(decision, "compute", .prefill)?.score?.compute == 1)
        #expect(candidate(decision, "bandwidth", .prefill)?.score?.compute == 0.2)
        #expect(candidate(decision, "bandwidth", .decode)?.rank == 1)
        #expect(decision.pairs.count == 4)
        #expect(decision.pairs.map(\.score) == decision.pairs.map(\.score).sorted(by: >))
    }

    @Test("prompts shorter than the threshold run decode-only; at the threshold they split")
    func skipDisaggregation() throws {
        var policy = PlacementPolicy()
        policy.disaggregation.minPromptTokens = 100
        let short = try choose(99, mixed, policy)
        #expect(short.mode == .decodeOnly)
        #expect(short.admission == .admit(WorkerPair(prefill: nil, decode: "bandwidth", link: nil)))
        #expect(short.candidates.allSatisfy { $0.role == .decode })
        #expect(short.modeReason.contains("shorter than disaggregation.min_prompt_tokens 100"))
        let atThreshold = try choose(100, mixed, policy)
        #expect(atThreshold.mode == .disaggregated)
        #expect(atThreshold.prefill == "compute")
    }

    @Test("thresholds, labels, names and roles exclude workers with their reasons")
    func filtering() throws {
        let state = cluster([
            (profile("big", gflops: 400, gbps: 10, labels: ["box": "compute"]), [.prefill, .decode], WorkerLoad()),
            (profile("small", gflops: 50, gbps: 10, labels: ["box": "compute"]), [.prefill, .decode], WorkerLoad()),
            (profile("fastmem", gflops: 80, gbps: 40, free: 1 << 30), [.decode], WorkerLoad()),
            (profile("other", gflops: 500, gbps: 50, labels: ["box": "gpu"]), [.prefill, .decode], WorkerLoad()),
            (profile("decoder", gflops: 80, gbps: 30), [.decode], WorkerLoad()),
        ])
        let policy = try PlacementPolicy.parse(yaml: """
            prefill: {min_gflops: 100, labels: {box: compute}}
            decode: {min_free_memory: 2GiB, workers: [fastmem, decoder, small], exclude_workers: [big]}
            """)
        let decision = try choose(1000, state, policy)
        #expect(decision.prefill == "big")
        #expect(decision.decode == "decoder")
        #expect(candidate(decision, "small", .prefill)?.reasons == ["sgemm 50 GFLOP/s < prefill.min_gflops 100"])
        #expect(candidate(decision, "other", .prefill)?.reasons == ["label box=gpu, prefill.labels wants box=compute"])
        #expect(candidate(decision, "decoder", .prefill)?.reasons.first == "does not serve prefill (roles: decode)")
        #expect(candidate(decision, "decoder", .prefill)?.reasons.contains("no label box, prefill.labels wants box=compute") == true)
        #expect(candidate(decision, "fastmem", .decode)?.reasons == ["free memory 1.0 GiB < decode.min_free_memory 2.0 GiB"])
        #expect(candidate(decision, "other", .decode)?.reasons == ["not listed in decode.workers"])
        #expect(candidate(decision, "big", .decode)?.reasons
            == ["not listed in decode.workers", "listed in decode.exclude_workers"])
        #expect(candidate(decision, "small", .decode)?.outcome == .ranked)
    }

    @Test("load lowers a score, so the less loaded of equal workers wins")
    func leastLoaded() throws {
        let state = cluster([
            (profile("a"), [.decode], WorkerLoad(queueDepth: 8, activeSequences: 4, freeKVBlocks: 100, totalKVBlocks: 100)),
            (profile("b"), [.decode], WorkerLoad(queueDepth: 0, activeSequences: 4, freeKVBlocks: 25, totalKVBlocks: 100)),
            (profile("c"), [.decode], WorkerLoad(queueDepth: 2, activeSequences: 4, freeKVBlocks: 90, totalKVBlocks: 100)),
        ])
        var policy = PlacementPolicy()
        policy.slo.maxQueueDepth = 32
        let decision = try choose(10, state, policy)
        #expect(decision.decode == "c")  // a: queue 8/32 = 0.25; b: KV 75 % used; c: queue 2/32 = 0.0625
        #expect(candidate(decision, "a", .decode)?.score?.load == 0.25)
        #expect(candidate(decision, "b", .decode)?.score?.load == 0.75)
        #expect(decision.candidates.compactMap(\.rank) == [1, 2, 3])
    }

    @Test("link cost prefers a same-host decode worker over an equal remote one")
    func linkCost() throws {
        let state = cluster([
            (profile("p", gflops: 400, gbps: 10, host: "h1", rdma: ["mlx5_0"]), [.prefill], WorkerLoad()),
            (profile("remote", gbps: 40, host: "h2"), [.decode], WorkerLoad()),
            (profile("rdma", gbps: 40, host: "h3", rdma: ["mlx5_1"]), [.decode], WorkerLoad()),
            (profile("local", gbps: 40, host: "h1"), [.decode], WorkerLoad()),
        ])
        let decision = try choose(1000, state)
        #expect(decision.admission == .admit(WorkerPair(prefill: "p", decode: "local", link: .sharedMemory)))
        #expect(decision.pairs.map(\.decode) == ["local", "rdma", "remote"])
        #expect(decision.pairs.map(\.link) == [.sharedMemory, .rdma, .tcp])
        var policy = PlacementPolicy()
        policy.scoring.linkWeight = 0
        let indifferent = try choose(1000, state, policy)
        #expect(Set(indifferent.pairs.map(\.score)).count == 1)
        #expect(indifferent.decode == "local")  // equal scores and loads: ties go to names in order
    }

    @Test("least_loaded is deterministic whatever the generator")
    func leastLoadedIgnoresRandomness() throws {
        let decisions = try (1...5).map { try choose(1000, mixed, seed: UInt64($0)) }
        #expect(Set(decisions.map { "\($0.prefill ?? "")/\($0.decode ?? "")" }).count == 1)
    }

    @Test("power_of_two compares two sampled candidates per role, reproducibly for a seed")
    func powerOfTwo() throws {
        var workers: [(DeviceProfile, [WorkerRole], WorkerLoad)] = []
        for index in 0..<6 {
            let gflops = Double(100 + 50 * index), gbps = Double(10 + 5 * index)
            workers.append((profile("w\(index)", gflops: gflops, gbps: gbps), [.prefill, .decode], WorkerLoad()))
        }
        let state = cluster(workers)
        var policy = PlacementPolicy()
        policy.balancing.strategy = .powerOfTwo
        policy.scoring.linkWeight = 0  // a worker paired with itself costs nothing; keep links out of this test
        var chosenDecoders = Set<String>()
        for seed in 0..<40 {
            let decision = try choose(1000, state, policy, seed: UInt64(seed))
            let again = try choose(1000, state, policy, seed: UInt64(seed))
            #expect(decision == again)
            #expect(decision.pairs.count == 4)
            let decoders = decision.candidates.filter { $0.role == .decode }
            #expect(decoders.filter { $0.outcome == .notSampled }.count == 4)
            let sampled = decoders.filter { $0.outcome == .chosen || $0.outcome == .ranked }
            #expect(sampled.count == 2)
            // The better-scoring sampled decoder wins.
            let best = sampled.max { (a: Decision.Candidate, b: Decision.Candidate) -> Bool in
                (a.score?.score ?? 0) < (b.score?.score ?? 0)
            }
            #expect(decision.decode == best?.worker)
            chosenDecoders.insert(decision.decode ?? "")
        }
        #expect(chosenDecoders.count > 1)  // spreads load, unlike least_loaded
        #expect(!chosenDecoders.contains("w0"))  // the worst is never the better of two
    }

    @Test("round_robin takes each role's workers in name order, in turn, whatever their scores, skipping full ones")
    func roundRobin() throws {
        let state = cluster([
            (profile("c", gflops: 400, gbps: 40), [.prefill, .decode], WorkerLoad()),
            (profile("a", gflops: 50, gbps: 5), [.prefill, .decode], WorkerLoad()),
            (profile("b", gflops: 400, gbps: 40), [.decode], WorkerLoad(queueDepth: 4)),  // at capacity: skipped
        ])
        var policy = try PlacementPolicy.parse(yaml: "balancing: {strategy: round_robin}\nslo: {max_queue_depth: 4}\n")
        #expect(policy.balancing.strategy == .roundRobin)
        var view = MembershipView()
        view.install(state, policy: policy, version: 1, placementIncarnation: "p", at: epoch)
        var rng = SeededGenerator(seed: 1)
        var pairs: [String] = []
        for index in 0..<4 {
            let decision = try view.choose(promptTokens: 1000, at: epoch, rng: &rng)
            pairs.append("\(decision.prefill ?? "-")→\(decision.decode ?? "-")")
            view.release(WorkerPair(prefill: decision.prefill, decode: decision.decode ?? "", link: nil))
            if index == 1 {
                // A new snapshot from placement does not restart the turns: they are this router's count.
                view.install(state, policy: policy, version: 2, placementIncarnation: "p", at: epoch)
            }
        }
        #expect(pairs == ["a→a", "c→c", "a→a", "c→c"])
        #expect(view.state.placements == 4)
        // Scoring would never pick the slow box `a`.
        policy.balancing.strategy = .leastLoaded
        view.install(state, policy: policy, version: 3, placementIncarnation: "p", at: epoch)
        let scored = try (0..<2).map { _ in try view.choose(promptTokens: 1000, at: epoch, rng: &rng).decode }
        #expect(scored == ["c", "c"])
    }

    @Test("a full queue, a full KV cache or a missed SLO make a worker overloaded and all-overloaded gives 429")
    func overloadRejects() throws {
        var policy = PlacementPolicy()
        policy.slo.maxQueueDepth = 4
        policy.slo.retryAfterSeconds = 2
        let state = cluster([
            (profile("p"), [.prefill], WorkerLoad()),
            (profile("queued"), [.decode], WorkerLoad(queueDepth: 4)),
            (profile("full"), [.decode], WorkerLoad(freeKVBlocks: 0, totalKVBlocks: 64)),
            (profile("slow"), [.decode], WorkerLoad(activeSequences: 3, freeKVBlocks: 5, totalKVBlocks: 64, recentTPOTMs: 500)),
        ])
        let decision = try choose(1000, state, policy)
        guard case .reject(let reason, let retryAfter) = decision.admission else {
            Issue.record("expected a 429, got \(decision.admission)")
            return
        }
        #expect(decision.admission.httpStatus == 429)
        #expect(retryAfter == 2)
        #expect(reason.hasPrefix("every decode worker is overloaded"))
        #expect(candidate(decision, "queued", .decode)?.reasons == ["queue depth 4 ≥ slo.max_queue_depth 4"])
        #expect(candidate(decision, "full", .decode)?.reasons == ["KV cache full (0 of 64 blocks free)"])
        #expect(candidate(decision, "slow", .decode)?.reasons == ["recent TPOT 500 ms > slo.tpot_ms 200 with 3 active"])
        #expect(decision.prefill == nil && decision.decode == nil)
    }

    @Test("under ttft_target a missed TTFT target only counts while the worker has queued work")
    func ttftNeedsQueue() throws {
        var policy = PlacementPolicy()
        policy.admission.policy = .ttftTarget
        func choose(_ tokens: Int, _ state: ClusterState) throws -> Decision { try self.choose(tokens, state, policy) }
        let idle = cluster([(profile("d"), [.decode], WorkerLoad(recentTTFTMs: 9000))])
        #expect(try choose(10, idle).decode == "d")
        let busy = cluster([(profile("d"), [.decode], WorkerLoad(queueDepth: 1, recentTTFTMs: 9000))])
        #expect(try choose(10, busy).admission.httpStatus == 429)
        // In disaggregated mode TTFT belongs to the prefill worker, not the decode worker.
        let split = cluster([
            (profile("p"), [.prefill], WorkerLoad()),
            (profile("d"), [.decode], WorkerLoad(queueDepth: 1, recentTTFTMs: 9000)),
        ])
        #expect(try choose(1000, split).decode == "d")
    }

    @Test("no registered, no eligible or only lost workers give 503")
    func unavailable() throws {
        let none = try choose(1000, ClusterState())
        #expect(none.admission == .unavailable(reason: "no decode worker is registered"))
        var lost = mixed
        lost.apply(.heartbeatLost(worker: "compute", at: epoch))
        lost.apply(.heartbeatLost(worker: "bandwidth", at: epoch))
        let allLost = try choose(1000, lost)
        #expect(allLost.admission.httpStatus == 503)
        #expect(candidate(allLost, "compute", .decode)?.reasons == ["heartbeat lost"])
        let onlyPrefill = cluster([(profile("p"), [.prefill], WorkerLoad())])
        #expect(try choose(1000, onlyPrefill).admission.httpStatus == 503)
    }

    @Test("without any prefill-eligible worker the request falls back to decode-only, unless disabled")
    func fallbackToDecodeOnly() throws {
        let decodeOnly = cluster([(profile("d"), [.decode], WorkerLoad())])
        let fallback = try choose(1000, decodeOnly)
        #expect(fallback.mode == .decodeOnly)
        #expect(fallback.admission == .admit(WorkerPair(prefill: nil, decode: "d", link: nil)))
        #expect(fallback.modeReason.contains("fallback_to_decode_only"))
        var policy = PlacementPolicy()
        policy.disaggregation.fallbackToDecodeOnly = false
        let strict = try choose(1000, decodeOnly, policy)
        #expect(strict.admission.httpStatus == 503)
        // An overloaded prefill pool is a 429, not a reason to fall back.
        let busyPrefill = cluster([
            (profile("p"), [.prefill], WorkerLoad(queueDepth: 32)),
            (profile("d"), [.decode], WorkerLoad()),
        ])
        let busy = try choose(1000, busyPrefill)
        #expect(busy.mode == .disaggregated)
        #expect(busy.admission.httpStatus == 429)
    }

    @Test("assignable roles are the offered ones whose pool filters the profile passes")
    func assignableRoles() throws {
        let policy = try PlacementPolicy.parse(yaml: "prefill: {min_gflops: 200}\ndecode: {labels: {box: bandwidth}}")
        let compute = profile("c", gflops: 400)
        let bandwidth = profile("b", gflops: 80, labels: ["box": "bandwidth"])
        #expect(Placement.assignableRoles(for: compute, offered: [.prefill, .decode], policy: policy) == [.prefill])
        #expect(Placement.assignableRoles(for: bandwidth, offered: [.prefill, .decode], policy: policy) == [.decode])
        #expect(Placement.assignableRoles(for: compute, offered: [.decode], policy: policy).isEmpty)
    }

    @Test("a negative prompt length is an invalid argument")
    func negativePrompt() {
        let error = placementError { _ = try choose(-1, mixed) }
        #expect(error?.code == .invalidArgument)
    }

    @Test("explain renders scores and reasons as text, and JSON that decodes back")
    func explain() throws {
        let policy = try PlacementPolicy.parse(yaml: "prefill: {min_gflops: 100}", file: "x.yaml")
        let decision = try choose(1000, mixed, policy)
        let text = decision.explainText(policy: policy)
        #expect(text.contains("Placement of a 1000-token prompt (policy x.yaml, strategy least_loaded)"))
        #expect(text.contains("Answer: admit — prefill on compute, decode on bandwidth (KV over tcp)"))
        #expect(text.contains("excluded: sgemm 80 GFLOP/s < prefill.min_gflops 100"))
        #expect(text.contains("compute → bandwidth  link tcp (cost 1)"))
        // Each candidate says what its box is (the test profiles record no ISA path).
        #expect(text.contains("excluded: sgemm 80 GFLOP/s < prefill.min_gflops 100  [isa unknown, 4 cores, 80 GFLOP/s, 40 GB/s]"))
        let json = try decision.explainJSON()
        #expect(json.contains("\"mode\" : \"disaggregated\""))
        #expect(json.contains("\"http_status\" : 200"))
        let decoded = try JSONDecoder().decode(Decision.self, from: Data(json.utf8))
        #expect(decoded == decision)
    }

    @Test("explain text shows decode-only runs, 429s and 503s")
    func explainRefusals() throws {
        let policy = PlacementPolicy()
        let short = try choose(10, mixed, policy).explainText(policy: policy)
        #expect(short.contains("Mode: decode_only — prompt of 10 tokens is shorter than disaggregation.min_prompt_tokens 64"))
        #expect(short.contains("Answer: admit — whole request on bandwidth"))
        #expect(!short.contains("Prefill candidates"))
        let busy = cluster([(profile("d"), [.decode], WorkerLoad(queueDepth: 99))])
        let rejected = try choose(10, busy, policy).explainText(policy: policy)
        #expect(rejected.contains("Answer: 429 reject (retry after 1 s) — every decode worker is overloaded"))
        #expect(rejected.contains("overloaded: queue depth 99 ≥ slo.max_queue_depth 4"))
        let empty = try choose(10, ClusterState(), policy).explainText(policy: policy)
        #expect(empty.contains("Answer: 503 unavailable — no decode worker is registered"))
        #expect(empty.contains("(no workers)"))
    }

    @Test("a cluster declared in worker files is what explain places onto")
    func declaredCluster() throws {
        let yaml = """
            workers:
              - name: c
                role: prefill
                profile: {sgemm_gflops: 400, memory_read_gbps: 10}
              - name: d
                role: decode
                profile: {sgemm_gflops: 90, memory_read_gbps: 40}
                load: {queue_depth: 1, free_kv_blocks: 10, total_kv_blocks: 20}
            """
        let state = try ClusterState.declared(yaml: yaml, file: "w.yaml")
        #expect(state.workers["d"]?.load.queueDepth == 1)
        #expect(try choose(1000, state).admission == .admit(WorkerPair(prefill: "c", decode: "d", link: .tcp)))
        let twice = placementError {
            _ = try ClusterState.declared(yaml: "workers:\n  - name: a\n  - name: a\n", file: "w.yaml")
        }
        #expect(twice?.location == .init(file: "w.yaml", line: 3, column: 5, key: "workers[1]"))
        let badLoad = placementError {
            _ = try ClusterState.declared(yaml: "name: a\nload: {queue_depht: 1}\n", file: "w.yaml")
        }
        #expect(badLoad?.message == "unknown key 'queue_depht'; did you mean 'queue_depth'?")
    }
}
