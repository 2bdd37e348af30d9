import Benchmarks
import Placement
import Testing

/// Small clusters whose times can be worked out by hand. The cost model has round numbers: a device of 1 000 GFLOP/s
/// prefills 1 token per ms (no pass overhead), a decode step takes 10 ms + 2 ms per sequence, and a 100-token
/// prompt's KV (10 kB a token) crosses a 1 GB/s link with 1 ms of latency at each end in 1 + 2 = 3 ms.
@Suite("Cluster simulator")
struct ClusterSimulatorTests {
    static let costs = CostModel(
        model: "test", reference: .init(sgemmGFLOPS: 1000, memoryReadGBps: 10, threads: 1),
        prefill: .init(flopsPerToken: 1e9, efficiency: 1, passOverheadSeconds: 0, attentionSecondsPerToken2: 0),
        decode: .init(weightSeconds: 0.010, perSequenceSeconds: 0.002, perContextTokenSeconds: 0),
        kvBytesPerToken: 10_000)
    static let link = LinkProfile(bandwidthGBps: 1, latencySeconds: 0.001)

    static func worker(_ name: String, _ roles: [WorkerRole], gflops: Double = 1000, gbps: Double = 10,
                       kvBlocks: Int? = nil, context: Int = 4096) -> SimulatedCluster.Worker {
        let profile = DeviceProfile(name: name, sgemmGFLOPS: gflops, memoryReadGBps: gbps, memoryTotalBytes: 1 << 30,
                                    memoryFreeBytes: 1 << 30, cores: 1,
                                    transports: .init(sharedMemoryHostID: "host-\(name)"))
        return SimulatedCluster.Worker(profile: profile, roles: roles, link: link, kvBlocks: kvBlocks, context: context)
    }

    static func arrivals(_ times: [Double], words: Int = 100, maxTokens: Int = 4) -> [ClusterSimulator.Arrival] {
        times.enumerated().map { .init(time: $1, request: .init(index: $0, prompt: .words(words), maxTokens: maxTokens)) }
    }

    static func run(_ workers: [SimulatedCluster.Worker], _ arrivals: [ClusterSimulator.Arrival],
                    policy: PlacementPolicy = PlacementPolicy()) throws -> ClusterSimulator.Result {
        try ClusterSimulator(cluster: SimulatedCluster(workers: workers), policy: policy, costs: costs).run(arrivals)
    }

    static func near(_ a: Double?, _ b: Double) -> Bool { a.map { abs($0 - b) < 1e-6 } ?? false }

    @Test("One request: TTFT is its prefill plus the hand-off, then one decode step per further token")
    func oneRequest() throws {
        let result = try Self.run([Self.worker("p", [.prefill]), Self.worker("d", [.decode])], Self.arrivals([0.5]))
        let record = try #require(result.records.first)
        // No queue; prefill 100 ms; hand-off 3 ms; the first token is sampled from the prompt's logits as the KV
        // lands (the decode lane is idle); three steps of 10 + 2 ms for tokens 2 to 4.
        #expect(Self.near(record.ttftMs, 103))
        #expect(record.itlMs.count == 3 && record.itlMs.allSatisfy { abs($0 - 12) < 1e-6 })
        #expect(Self.near(record.e2eMs, 139))
        #expect(record.error == nil && record.completionTokens == 4 && record.promptTokens == 100)
        #expect(result.decodeOnly == 0)
    }

    @Test("Prompts that arrive while a prefill pass runs share the next pass")
    func promptsBatch() throws {
        let result = try Self.run([Self.worker("p", [.prefill]), Self.worker("d", [.decode])],
                                  Self.arrivals([0, 0.05, 0.05], maxTokens: 1))
        // The first prompt's pass runs 0–100 ms; the two that came at 50 ms wait and then share one pass of 200
        // rows (100–300 ms); hand-offs take 3 ms; one token each, straight from the prompt's logits.
        #expect(result.records.map { ($0.ttftMs! * 1000).rounded() / 1000 } == [103, 253, 253])
    }

    @Test("A sequence whose KV lands during a step joins the batch at the step's end")
    func decodeBatches() throws {
        let result = try Self.run([Self.worker("p", [.prefill]), Self.worker("d", [.decode])], Self.arrivals([0, 0], maxTokens: 20))
        let (a, b) = (result.records[0], result.records[1])
        // a: prefill 0–100, lands at 103, then one-sequence steps of 12 ms (token k at 103 + 12 (k − 1)).
        // b: prefill 100–200, lands at 203 during a's step 199–211, so its first token comes at 211. Then steps of
        // two sequences (14 ms) until a's 20th token (211 + 10 × 14 = 351), then b alone: 9 steps of 12 ms.
        #expect(Self.near(a.ttftMs, 103) && Self.near(b.ttftMs, 211))
        #expect(a.itlMs.map { ($0 * 1000).rounded() / 1000 } == Array(repeating: 12, count: 9) + Array(repeating: 14, count: 10))
        #expect(b.itlMs.map { ($0 * 1000).rounded() / 1000 } == Array(repeating: 14, count: 10) + Array(repeating: 12, count: 9))
        #expect(Self.near(a.e2eMs, 351) && Self.near(b.e2eMs, 459))
    }

    @Test("A request waits for KV blocks while the decode cache holds another")
    func kvCapacityWaits() throws {
        // 8 blocks of 16 tokens: one request of 100 prompt + 20 output tokens (8 blocks) at a time.
        let decode = Self.worker("d", [.decode], kvBlocks: 8, context: 128)
        let result = try Self.run([Self.worker("p", [.prefill]), decode], Self.arrivals([0, 0], maxTokens: 20))
        let (a, b) = (result.records[0], result.records[1])
        // a lands at 103 and ends at 103 + 19 × 12 = 331. b is prefilled by 200 ms but its blocks are reserved only
        // when a's are freed, at 331; its KV then crosses (3 ms): first token at 334, last at 334 + 19 × 12 = 562.
        #expect(Self.near(a.ttftMs, 103) && Self.near(a.e2eMs, 331))
        #expect(Self.near(b.ttftMs, 334) && Self.near(b.e2eMs, 562))
    }

    @Test("The policy sends a request to the faster of two workers")
    func policyChoosesFaster() throws {
        let slow = Self.worker("a-slow", [.prefill, .decode])
        let fast = Self.worker("b-fast", [.prefill, .decode], gflops: 2000, gbps: 20)
        let result = try Self.run([slow, fast], Self.arrivals([0]))
        // Default scoring: compute for prefill, bandwidth for decode; the pair (b-fast, b-fast) wins and runs locally:
        // 100 tokens at 2 per ms, then steps at twice the bandwidth and GFLOP/s: (10 + 2) / 2 = 6 ms.
        let record = try #require(result.records.first)
        #expect(Self.near(record.ttftMs, 50))
        #expect(record.itlMs.allSatisfy { abs($0 - 6) < 1e-6 })
        #expect(result.decodeOnly == 1)
        #expect((result.busyShare["a-slow"] ?? 1) == 0)
    }

    @Test("Under ttft_target a request that finds every worker at its queue limit is refused with 429")
    func refusedUnderTTFTTarget() throws {
        var policy = PlacementPolicy()
        policy.admission.policy = .ttftTarget
        policy.slo.maxQueueDepth = 1
        // One request's KV at a time (8 blocks hold 100 + 20 tokens), and slow steps (1 GB/s: 100 + 2 ms), so each
        // request holds the worker for 100 + 19 × 102 ms ≈ 2 s. The heartbeat at 1 s reports two requests waiting
        // for room; the fourth, arriving at 1.5 s, finds the worker at its queue limit.
        let decode = Self.worker("d", [.decode, .prefill], gbps: 1, kvBlocks: 8, context: 128)
        let result = try Self.run([decode], Self.arrivals([0, 0, 0, 1.5], maxTokens: 20), policy: policy)
        #expect(result.records.map(\.error) == [nil, nil, nil, "http 429"])
    }

    @Test("The summary has bench serve's figures and goodput at the SLO")
    func summaryAndGoodput() throws {
        var options = ClusterSimulator.Options()
        options.slo = ServeSLO(ttftMs: 150)
        let result = try ClusterSimulator(
            cluster: SimulatedCluster(workers: [Self.worker("p", [.prefill]), Self.worker("d", [.decode])]),
            policy: PlacementPolicy(), costs: Self.costs, options: options
        ).run(Self.arrivals([0, 0]))
        // a (TTFT 103) meets 150 ms, b (prefilled after a: 203) misses it; one second apart both meet it.
        #expect(result.summary.sloAttainment == 0.5)
        let spaced = try ClusterSimulator(
            cluster: SimulatedCluster(workers: [Self.worker("p", [.prefill]), Self.worker("d", [.decode])]),
            policy: PlacementPolicy(), costs: Self.costs, options: options
        ).run(Self.arrivals([0, 1]))
        #expect(spaced.summary.sloAttainment == 1)
        #expect(Self.near(spaced.summary.ttftMs.p50, 103))
        #expect(Self.near(spaced.summary.durationSeconds, 1.139))
    }
}
