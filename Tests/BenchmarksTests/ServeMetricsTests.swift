import Benchmarks
import Testing

@Suite("Serving benchmark figures")
struct ServeMetricsTests {
    @Test("Percentiles interpolate linearly between the nearest ranks, as numpy does")
    func percentilesInterpolate() {
        #expect(Percentiles([20, 10]).p50 == 15)
        let hundred = Percentiles((1...100).map(Double.init))
        #expect(abs(hundred.p50 - 50.5) < 1e-9)
        #expect(abs(hundred.p90 - 90.1) < 1e-9)
        #expect(abs(hundred.p99 - 99.01) < 1e-9)
        #expect(hundred.mean == 50.5)
        #expect(Percentiles([7]) == Percentiles([7, 7, 7]))
        #expect(Percentiles([]).p99 == 0)
        #expect(Percentiles.percentile([1, 2, 3, 4], 0) == 1 && Percentiles.percentile([1, 2, 3, 4], 1) == 4)
    }

    @Test("An SLO parses seconds and milliseconds and rejects what it cannot read, naming the part")
    func sloParsing() throws {
        let slo = try ServeSLO(parsing: "ttft=2s,itl=100ms")
        #expect(slo == ServeSLO(ttftMs: 2000, itlMs: 100))
        #expect(slo.description == "ttft=2s,itl=100ms")
        #expect(try ServeSLO(parsing: "e2e=1.5s").e2eMs == 1500)
        for (bad, words) in [("ttft=2", "needs a number with a unit"), ("tbt=1s", "unknown key \"tbt\""), ("ttft", "not KEY=VALUE"),
                             ("ttft=-1s", "positive"), ("", "KEY=VALUE pairs")] {
            #expect {
                try ServeSLO(parsing: bad)
            } throws: { error in
                (error as? BenchmarkError)?.code == .invalidArgument && "\(error)".contains(words)
            }
        }
    }

    /// Five requests over 2 s: one failed, one too slow to start, one too slow between tokens, two good.
    static let records = [
        RequestRecord(index: 0, sentMs: 0, ttftMs: 500, e2eMs: 1500, itlMs: [100, 100], promptTokens: 10, completionTokens: 11),
        RequestRecord(index: 1, sentMs: 100, ttftMs: 2500, e2eMs: 2600, itlMs: [50], promptTokens: 10, completionTokens: 3),
        RequestRecord(index: 2, sentMs: 200, ttftMs: 800, e2eMs: 2800, itlMs: [150, 250], promptTokens: 10, completionTokens: 11),
        RequestRecord(index: 3, sentMs: 300, ttftMs: nil, e2eMs: nil, error: "http 429"),
        RequestRecord(index: 4, sentMs: 400, ttftMs: 1000, e2eMs: 1000, promptTokens: 30, completionTokens: 1),
    ]

    @Test("Goodput counts the requests that succeeded and met every bound, per second of the run")
    func goodputArithmetic() {
        let slo = ServeSLO(ttftMs: 2000, itlMs: 100)
        // TPOT: (1500 − 500) / 10 = 100 (meets), (2600 − 2500) / 2 = 50, (2800 − 800) / 10 = 200 (misses); one token: none.
        #expect(Self.records.map(\.tpotMs) == [100, 50, 200, nil, nil])
        #expect(Self.records.map { slo.isMet(by: $0) } == [true, false, false, false, true])
        let summary = LevelSummary(records: Self.records, durationSeconds: 2, slo: slo)
        #expect(summary.goodput == 1.0)
        #expect(summary.sloAttainment == 0.4)
        #expect(summary.succeeded == 4 && summary.requests == 5 && summary.errors == ["http 429": 1])
        #expect(summary.requestsPerSecond == 2)
        #expect(summary.outputTokensPerSecond == 13)  // (11 + 3 + 11 + 1) / 2
        #expect(summary.promptTokensMean == 15)
        #expect(summary.itlMs == Percentiles([100, 100, 50, 150, 250]))
        #expect(summary.ttftMs.p50 == 900)  // 500, 800, 1000, 2500
        #expect(LevelSummary(records: Self.records, durationSeconds: 2, slo: nil).goodput == nil)
        #expect(LevelSummary(records: Self.records, durationSeconds: 2, slo: ServeSLO(e2eMs: 1200)).goodput == 0.5)
    }

    @Test("The ratios compare each system with the last, level by level")
    func ratios() throws {
        let level = { (seconds: Double) in
            ServeBenchmark.Level(
                spec: .rate(1), summary: LevelSummary(records: Self.records, durationSeconds: seconds, slo: ServeSLO(ttftMs: 2000)),
                records: Self.records)
        }
        let description = ServeRunDescription(
            preset: .shortChat, trace: nil, requests: 5, levels: [.rate(1)], seed: 1, temperature: 0, slo: ServeSLO(ttftMs: 2000),
            timeoutSeconds: 10)
        let report = ServeReport(configuration: description, systems: [
            .init(name: "fast", command: [], url: "", model: "m", levels: [level(1)]),
            .init(name: "slow", command: [], url: "", model: "m", levels: [level(4)]),
        ])
        let ratio = try #require(report.ratios.first)
        #expect(report.ratios.count == 1 && ratio.system == "fast" && ratio.versus == "slow" && ratio.level == "rate 1/s")
        #expect(ratio.outputTokensPerSecond == 4 && ratio.goodput == 4 && ratio.ttftP50 == 1)
        #expect(ServeReport.maxRate([level(1)], attaining: 0.6) == 1 && ServeReport.maxRate([level(1)], attaining: 0.9) == nil)
    }

    /// Two conversations of two turns; the second turns ship less KV (the decode worker held their history).
    static func turnRecords(kvScale: Int, ttftScale: Double) -> [RequestRecord] {
        [
            RequestRecord(index: 0, conversation: "c0", turn: 0, sentMs: 0, ttftMs: 100 * ttftScale, e2eMs: 900, promptTokens: 600, completionTokens: 64, kvBytes: 12_000 * kvScale, kvBytesNotShipped: 0),
            RequestRecord(index: 1, conversation: "c1", turn: 0, sentMs: 0, ttftMs: 300 * ttftScale, e2eMs: 900, promptTokens: 600, completionTokens: 64, kvBytes: 8_000 * kvScale, kvBytesNotShipped: 4_000),
            RequestRecord(index: 2, conversation: "c0", turn: 1, sentMs: 0, ttftMs: 50 * ttftScale, e2eMs: 900, promptTokens: 760, completionTokens: 64, kvBytes: 2_000 * kvScale, kvBytesNotShipped: 14_000),
            RequestRecord(index: 3, conversation: "c1", turn: 1, sentMs: 0, ttftMs: 3000, e2eMs: 900, error: "http 504"),
        ]
    }

    @Test("A workload of conversations is summarised turn by turn, with the KV bytes shipped, and compared turn by turn")
    func turns() throws {
        let slo = ServeSLO(ttftMs: 1000)
        let cached = LevelSummary(records: Self.turnRecords(kvScale: 1, ttftScale: 1), durationSeconds: 2, slo: slo)
        let turns = try #require(cached.turns)
        #expect(turns.map(\.turn) == [0, 1] && turns.map(\.requests) == [2, 2] && turns.map(\.succeeded) == [2, 1])
        #expect(turns[0].ttftMs.p50 == 200 && turns[1].ttftMs.p50 == 50)
        #expect(turns[0].kvBytesPerRequest == 10_000 && turns[0].kvBytesNotShippedPerRequest == 2_000)
        #expect(turns[1].kvBytesPerRequest == 2_000, "a failed request ships nothing worth counting")
        #expect(turns[0].transfers == 2 && turns[0].kvBytesPerTransfer == 10_000)
        #expect(turns[0].goodput == 1 && turns[1].goodput == 0.5 && turns[1].sloAttainment == 0.5)
        #expect(cached.kvBytesPerRequest == 22_000.0 / 3)
        #expect(LevelSummary(records: Self.records, durationSeconds: 1, slo: nil).turns == nil, "no conversations, no turns")

        let uncached = LevelSummary(records: Self.turnRecords(kvScale: 4, ttftScale: 4), durationSeconds: 2, slo: slo)
        let level = { (summary: LevelSummary) in ServeBenchmark.Level(spec: .concurrency(2), summary: summary, records: []) }
        let description = ServeRunDescription(
            preset: try .named("multi-turn"), trace: nil, requests: 4, levels: [.concurrency(2)], seed: 1, temperature: 0, slo: slo,
            timeoutSeconds: 10)
        let report = ServeReport(configuration: description, systems: [
            .init(name: "baton-split", command: [], url: "", model: "m", levels: [level(cached)]),
            .init(name: "baton-split-no-cache", command: [], url: "", model: "m", levels: [level(uncached)]),
        ])
        let ratio = try #require(report.ratios.first)
        #expect(ratio.kvBytesPerRequest == 0.25)
        let byTurn = try #require(ratio.turns)
        #expect(byTurn.map(\.kvBytesPerRequest) == [0.25, 0.25] && byTurn[0].ttftP50 == 0.25)
    }
}
