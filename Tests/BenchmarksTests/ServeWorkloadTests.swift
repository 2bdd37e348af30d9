import Benchmarks
import Testing

@Suite("Serving benchmark workloads")
struct ServeWorkloadTests {
    @Test("A trace is ordered by timestamp and a conversation's turns follow one another")
    func traceParses() throws {
        let text = """
            {"timestamp": 1500, "input_length": 40, "output_length": 8, "conversation_id": "a", "turn": 1}
            {"timestamp": 0, "input_length": 30, "output_length": 16, "conversation_id": "a", "turn": 0, "hash_ids": [1, 2]}

            {"timestamp": 250.5, "text": "Hello there", "output_length": 4}
            {"timestamp": 2000, "input_length": 5, "output_length": 2, "conversation_id": 7}
            {"timestamp": 2500, "input_length": 5, "output_length": 2, "conversation_id": 7}
            """
        let requests = try ServeWorkload.trace(text, source: "t.jsonl").requests
        #expect(requests.map(\.timestamp) == [0, 0.2505, 1.5, 2, 2.5])
        #expect(requests.map(\.index) == [0, 1, 2, 3, 4])
        #expect(requests[0].prompt == .words(30) && requests[0].maxTokens == 16 && requests[0].conversation == "a" && requests[0].turn == 0)
        #expect(requests[1].prompt == .text("Hello there") && requests[1].conversation == nil && requests[1].follows == nil)
        #expect(requests[2].turn == 1 && requests[2].follows == 0)
        #expect(requests[3].conversation == "7" && requests[3].turn == 0 && requests[3].follows == nil)
        #expect(requests[4].turn == 1 && requests[4].follows == 3)
    }

    @Test("A bad trace line is refused with its file, line number and key")
    func badLines() {
        let good = #"{"timestamp": 0, "input_length": 8, "output_length": 8}"#
        let cases: [(String, String)] = [
            ("not json", "t.jsonl line 2: not a JSON object"),
            (#"{"input_length": 8, "output_length": 8}"#, "t.jsonl line 2: missing \"timestamp\""),
            (#"{"timestamp": -5, "input_length": 8, "output_length": 8}"#, "t.jsonl line 2: \"timestamp\" must be"),
            (#"{"timestamp": 1, "output_length": 8}"#, "t.jsonl line 2: needs \"input_length\""),
            (#"{"timestamp": 1, "input_length": 8, "text": "x", "output_length": 8}"#, "t.jsonl line 2: has both"),
            (#"{"timestamp": 1, "input_length": 2.5, "output_length": 8}"#, "t.jsonl line 2: \"input_length\" must be an integer"),
            (#"{"timestamp": 1, "input_length": 8, "output_length": 0}"#, "t.jsonl line 2: \"output_length\" must be an integer ≥ 1"),
            (#"{"timestamp": 1, "input_length": 8}"#, "t.jsonl line 2: missing \"output_length\""),
            (#"{"timestamp": 1, "input_length": 8, "output_length": 8, "turn": 1}"#, "t.jsonl line 2: \"turn\" without"),
            (#"{"timestamp": 1, "input_length": 8, "output_length": 8, "conversation_id": [1]}"#, "line 2: \"conversation_id\" must be"),
        ]
        for (line, message) in cases {
            #expect {
                try ServeWorkload.trace(good + "\n" + line + "\n" + good, source: "t.jsonl")
            } throws: { error in
                (error as? BenchmarkError)?.code == .invalidTrace && "\(error)".contains(message)
            }
        }
        let twice = """
            {"timestamp": 0, "input_length": 8, "output_length": 8, "conversation_id": "a", "turn": 0}
            {"timestamp": 5, "input_length": 8, "output_length": 8, "conversation_id": "a", "turn": 0}
            """
        #expect(throws: BenchmarkError.self) { try ServeWorkload.trace(twice, source: "t.jsonl") }
        let backwards = """
            {"timestamp": 9, "input_length": 8, "output_length": 8, "conversation_id": "a", "turn": 0}
            {"timestamp": 5, "input_length": 8, "output_length": 8, "conversation_id": "a", "turn": 1}
            """
        #expect {
            try ServeWorkload.trace(backwards, source: "t.jsonl")
        } throws: { "\($0)".contains("t.jsonl line 2: a later turn") }
        #expect { try ServeWorkload.trace("\n\n", source: "e.jsonl") } throws: { "\($0)".contains("e.jsonl: no requests") }
    }

    @Test("A Poisson schedule is the same for the same seed, differs for another, and keeps its rate")
    func poissonReproducible() {
        let a = ServeWorkload.poissonArrivals(count: 2000, rate: 4, seed: 42)
        #expect(a == ServeWorkload.poissonArrivals(count: 2000, rate: 4, seed: 42))
        #expect(a != ServeWorkload.poissonArrivals(count: 2000, rate: 4, seed: 43))
        #expect(zip(a, a.dropFirst()).allSatisfy { $0 < $1 } && a[0] > 0)
        // 2000 exponential gaps of mean 0.25 s: the total is within 10 % of 500 s (about 4.5 standard deviations).
        #expect(abs(a.last! - 500) < 50)
        // The same seed at twice the rate is the same schedule at half the times (common random numbers across a sweep).
        let b = ServeWorkload.poissonArrivals(count: 2000, rate: 8, seed: 42)
        #expect(zip(a, b).allSatisfy { abs($0 / 2 - $1) < 1e-9 })
    }

    @Test("Presets make interleaved conversations whose turns follow one another over one shared system prompt")
    func presets() throws {
        let preset = try ServeWorkload.Preset.named("multi-turn")
        #expect(preset.turns == 6 && preset.promptWords == 100 && preset.maxTokens == 64 && preset.systemWords == 500)
        // 8 requests of 6 turns: 2 conversations, every first turn before any second one.
        let workload = ServeWorkload.synthetic(preset, count: 8)
        #expect(workload.requests.map(\.conversation) == ["c0", "c1", "c0", "c1", "c0", "c1", "c0", "c1"])
        #expect(workload.requests.map(\.turn) == [0, 0, 1, 1, 2, 2, 3, 3])
        #expect(workload.requests.map(\.follows) == [nil, nil, 0, 1, 2, 3, 4, 5])
        let system = try #require(workload.requests[0].system)
        #expect(workload.requests[1].system == system, "one system prompt for every conversation")
        #expect(workload.requests.dropFirst(2).allSatisfy { $0.system == nil }, "later turns carry it in their history")
        #expect(abs(system.split(separator: " ").count - 500) < 15, "about 500 words")
        #expect(ServeWorkload.synthetic(preset, count: 192).requests.filter { $0.turn == 5 }.count == 32)
        #expect(try ServeWorkload.Preset.named("long-prompt").promptWords == 2000)
        #expect(throws: BenchmarkError.self) { try ServeWorkload.Preset.named("nope") }
        #expect(ServeWorkload.synthetic(.shortChat, count: 3).requests.allSatisfy { $0.follows == nil && $0.maxTokens == 64 })
    }
}
