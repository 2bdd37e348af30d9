import Foundation
import Testing
@testable import Placement

/// `least_loaded` on large clusters finds its pair with `PairSearch`; these check it against scoring every pair.
@Suite("Pair search")
struct PairSearchTests {
    /// The straightforward `least_loaded`: every prefill × decode pair scored and sorted, as `Placement.choose` did
    /// before `PairSearch`. Returns the best pair first.
    static func referencePairs(promptTokens: Int, state: ClusterState,
                               policy: PlacementPolicy) -> [(pair: Decision.PairScore, load: Double)] {
        let workers = state.workers.values.sorted { $0.name < $1.name }
        var decodeOnly = promptTokens < policy.disaggregation.minPromptTokens
        var prefill: RolePool?
        if !decodeOnly {
            let pool = RolePool(role: .prefill, workers: workers, policy: policy, checksTTFT: true)
            if pool.eligible.isEmpty, pool.overloadedCount == 0, policy.disaggregation.fallbackToDecodeOnly {
                decodeOnly = true
            } else {
                prefill = pool
            }
        }
        let decode = RolePool(role: .decode, workers: workers, policy: policy, checksTTFT: decodeOnly)
        if decode.eligible.isEmpty || prefill?.eligible.isEmpty == true { return [] }
        var pairs: [(pair: Decision.PairScore, load: Double)] = []
        let prefillSample: [RolePool.Scored?] = prefill.map { $0.eligible.map { $0 } } ?? [nil]
        for p in prefillSample {
            for d in decode.eligible {
                let link = p.map { LinkKind.between($0.worker.profile, d.worker.profile) }
                let linkCost = link.map { policy.scoring.linkCosts.cost($0) } ?? 0
                let score = (p?.score.score ?? 0) + d.score.score - policy.scoring.linkWeight * linkCost
                pairs.append((Decision.PairScore(prefill: p?.worker.name, decode: d.worker.name, link: link,
                                                 linkCost: linkCost, score: score),
                              (p?.score.load ?? 0) + d.score.load))
            }
        }
        func key(_ pair: Decision.PairScore) -> String { "\(pair.prefill ?? "")\u{0}\(pair.decode)" }
        pairs.sort { a, b in
            if a.pair.score != b.pair.score { return a.pair.score > b.pair.score }
            if a.load != b.load { return a.load < b.load }
            return key(a.pair) < key(b.pair)
        }
        return pairs
    }

    /// A random cluster with many exact ties: few distinct profiles, loads and hosts, so that equal scores (and
    /// equal scores with equal loads) are common, as in a real fleet of identical boxes.
    static func randomCluster(_ rng: inout SeededGenerator) -> ClusterState {
        var state = ClusterState()
        let count = Int.random(in: 2...90, using: &rng)
        let hosts = Int.random(in: 1...max(1, count / 3), using: &rng)
        for index in 0..<count {
            let name = ["a", "b", "ab", "w", "w1"].randomElement(using: &rng)! + "-\(Int.random(in: 0...999, using: &rng))-\(index)"
            let host: String? = Int.random(in: 0..<5, using: &rng) == 0 ? nil : "h\(Int.random(in: 0..<hosts, using: &rng))"
            let rdma = Int.random(in: 0..<3, using: &rng) == 0 ? ["mlx5_0"] : []
            let profile = DeviceProfile(name: name, sgemmGFLOPS: [100, 200, 400].randomElement(using: &rng)!,
                                        memoryReadGBps: [10, 20, 30].randomElement(using: &rng)!,
                                        memoryTotalBytes: 16 << 30, memoryFreeBytes: 8 << 30, cores: 4,
                                        transports: .init(rdmaDevices: rdma, sharedMemoryHostID: host))
            let roles: [WorkerRole] = [[.prefill], [.decode], [.prefill, .decode]].randomElement(using: &rng)!
            state.apply(.joined(profile: profile, roles: roles, at: epoch))
            let total = 100
            let load = WorkerLoad(queueDepth: Int.random(in: 0...2, using: &rng), activeSequences: 1,
                                  freeKVBlocks: [100, 75, 50, 33, 10].randomElement(using: &rng)!, totalKVBlocks: total)
            state.apply(.heartbeat(worker: name, load: load, at: epoch))
            for _ in 0..<Int.random(in: 0...1, using: &rng) {
                state.recordPlacement(WorkerPair(prefill: nil, decode: name, link: nil))
            }
        }
        return state
    }

    static func randomPolicy(_ rng: inout SeededGenerator) -> PlacementPolicy {
        var policy = PlacementPolicy()
        policy.slo.maxQueueDepth = [2, 8, 8].randomElement(using: &rng)!  // 2: many at capacity, some 429s
        policy.scoring.linkWeight = [0, 0.3, 1, 0.1].randomElement(using: &rng)!
        let costs = [[0, 0.25, 1], [0, 0, 0], [0.5, 0.5, 0.7], [0.1, 0.3, 0.3]].randomElement(using: &rng)!
        policy.scoring.linkCosts.sharedMemory = costs[0]
        policy.scoring.linkCosts.rdma = costs[1]
        policy.scoring.linkCosts.tcp = costs[2]
        let load = [0, 0.5, 1.0 / 3].randomElement(using: &rng)!
        policy.scoring.prefill.load = load
        policy.scoring.decode.load = load
        if Bool.random(using: &rng) {
            policy.scoring.prefill.bandwidth = 0.1
            policy.scoring.decode.compute = 0.7
        }
        return policy
    }

    @Test("least_loaded on random large clusters chooses exactly what scoring every pair chooses")
    func agreesWithEveryPair() throws {
        var rng = SeededGenerator(seed: 42)
        var searched = 0, refused = 0
        for trial in 0..<400 {
            let state = Self.randomCluster(&rng)
            let policy = Self.randomPolicy(&rng)
            let tokens = trial % 5 == 0 ? 10 : 1000
            let reference = Self.referencePairs(promptTokens: tokens, state: state, policy: policy)
            var unused = SeededGenerator(seed: 0)
            let decision = try Placement.choose(promptTokens: tokens, state: state, policy: policy, rng: &unused)
            // The answer alone (`explains: false`) is the same answer; a refusal is the same decision, reasons and all.
            let answer = try Placement.choose(promptTokens: tokens, state: state, policy: policy, explains: false,
                                              rng: &unused)
            #expect(answer.admission == decision.admission, "trial \(trial)")
            #expect(answer.mode == decision.mode && answer.prefill == decision.prefill && answer.decode == decision.decode)
            #expect(answer.pairs == Array(decision.pairs.prefix(1)), "trial \(trial)")
            guard let best = reference.first else {
                #expect(decision.decode == nil, "trial \(trial)")
                #expect(answer == decision, "trial \(trial)")
                refused += 1
                continue
            }
            #expect(answer.candidates.isEmpty)
            if reference.count > Placement.listedPairs { searched += 1 }
            #expect(decision.prefill == best.pair.prefill, "trial \(trial)")
            #expect(decision.decode == best.pair.decode, "trial \(trial)")
            #expect(decision.admission == .admit(WorkerPair(prefill: best.pair.prefill, decode: best.pair.decode,
                                                            link: best.pair.link)), "trial \(trial)")
            #expect(decision.pairs.first == best.pair, "trial \(trial)")
            // Every pair listed is scored as the reference scores it, and the list is in the pairs' order.
            let byKey = Dictionary(uniqueKeysWithValues: reference.map { ("\($0.pair.prefill ?? "")/\($0.pair.decode)", $0.pair) })
            for pair in decision.pairs {
                #expect(byKey["\(pair.prefill ?? "")/\(pair.decode)"] == pair, "trial \(trial)")
            }
            #expect(decision.pairs.map(\.score) == decision.pairs.map(\.score).sorted(by: >), "trial \(trial)")
            if reference.count <= Placement.listedPairs || decision.mode == .decodeOnly {
                #expect(decision.pairs == reference.prefix(Placement.listedPairs).map(\.pair), "trial \(trial)")
            }
        }
        #expect(searched > 150)  // most trials took the search, not the listing of every pair
        #expect(refused > 0)  // and some were refused (429 or 503): decided again with reasons
    }

    @Test("a fleet of identical idle workers goes to the first names, each on its own host")
    func identicalFleet() throws {
        var state = ClusterState()
        for index in 0..<300 {
            let name = String(format: "box-%03d", index)
            let profile = DeviceProfile(name: name, sgemmGFLOPS: 100, memoryReadGBps: 20, memoryTotalBytes: 16 << 30,
                                        memoryFreeBytes: 8 << 30, cores: 4,
                                        transports: .init(sharedMemoryHostID: "host-\(name)"))
            state.apply(.joined(profile: profile, roles: index < 100 ? [.prefill] : [.decode], at: epoch))
        }
        var rng = SeededGenerator(seed: 1)
        let decision = try Placement.choose(promptTokens: 1000, state: state, policy: PlacementPolicy(), rng: &rng)
        #expect(decision.admission == .admit(WorkerPair(prefill: "box-000", decode: "box-100", link: .tcp)))
        #expect(decision.pairs.count == Placement.listedPairs)
        #expect(decision.pairs.map(\.prefill).prefix(3) == ["box-000", "box-001", "box-002"])
    }
}
