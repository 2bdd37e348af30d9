import Foundation
import Testing

/// `baton bench serve` against a real `baton serve` process: a trace replay with a conversation, a Poisson level,
/// and `--compare` starting the server itself. Tiny workloads: this checks the plumbing, not speed.
@Suite("bench serve against baton serve", .serialized)
struct BenchServeProcessTests {
    static func lastJSON(_ output: String) throws -> [String: Any] {
        try #require(output.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
    }

    @Test("A trace replay and a Poisson level keep every request's record and compute goodput from them")
    func traceAndPoisson() async throws {
        let port = try OpenAIClientTests.freePort()
        let server = try BatonProcess(["serve", "--port", "\(port)", "--context", "512", "--threads", "1"])
        defer { server.process.terminate() }
        try await server.wait(for: "the server to listen", timeout: .seconds(60)) { $0.standardError.contains("Server started") }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-bench-it-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let trace = directory.appendingPathComponent("trace.jsonl")
        try """
            {"timestamp": 0, "input_length": 12, "output_length": 4, "conversation_id": "a", "turn": 0}
            {"timestamp": 100, "text": "Name a colour.", "output_length": 3}
            {"timestamp": 200, "input_length": 8, "output_length": 4, "conversation_id": "a", "turn": 1}
            """.write(to: trace, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("report").path
        let replay = try await BatonProcess.run([
            "bench", "serve", "--url", "http://127.0.0.1:\(port)", "--trace", trace.path, "--temperature", "0",
            "--slo", "ttft=60s,itl=10s", "--out", out, "--json",
        ], timeout: .seconds(120))
        #expect(replay.status == 0, "\(replay.error)")
        let json = try Self.lastJSON(replay.output)
        let configuration = try #require(json["configuration"] as? [String: Any])
        #expect(configuration["trace"] as? String == trace.path && configuration["temperature"] as? Double == 0)
        #expect((configuration["slo"] as? [String: Double]) == ["ttft_ms": 60000, "itl_ms": 10000])
        let level = try #require(((json["systems"] as? [[String: Any]])?.first?["levels"] as? [[String: Any]])?.first)
        #expect(level["trace_speed"] as? Double == 1 && level["succeeded"] as? Int == 3, "\(level)")
        let records = try #require(level["records"] as? [[String: Any]])
        #expect(records.map { $0["index"] as? Int } == [0, 1, 2])
        #expect(records.map { $0["scheduled_ms"] as? Double } == [0, 100, 200])
        // The second turn carries the first turn's question and answer: a longer prompt than its own 8 words.
        let first = try #require(records[0]["prompt_tokens"] as? Int), second = try #require(records[2]["prompt_tokens"] as? Int)
        #expect(second > first, "\(records)")
        #expect(records[2]["sent_ms"] as! Double >= (records[0]["sent_ms"] as! Double) + (records[0]["e2e_ms"] as! Double) - 1)
        // Everything met the loose SLO: goodput is the request rate.
        #expect(level["slo_attainment"] as? Double == 1 && level["goodput"] as? Double == level["requests_per_second"] as? Double)
        for file in ["report.json", "report.html", "goodput.svg", "ttft-cdf-trace.svg", "itl-cdf-trace.svg"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(file)")
        }

        let poisson = try await BatonProcess.run([
            "bench", "serve", "--url", "http://127.0.0.1:\(port)", "--rate", "20", "--requests", "3", "--prompt-words", "16",
            "--max-tokens", "3", "--seed", "9", "--json",
        ], timeout: .seconds(120))
        #expect(poisson.status == 0, "\(poisson.error)")
        let rateLevel = try #require(((try Self.lastJSON(poisson.output)["systems"] as? [[String: Any]])?.first?["levels"] as? [[String: Any]])?.first)
        #expect(rateLevel["rate"] as? Double == 20 && rateLevel["succeeded"] as? Int == 3, "\(rateLevel)")
        #expect(rateLevel["goodput"] == nil)
        let scheduled = try #require((rateLevel["records"] as? [[String: Any]])?.compactMap { $0["scheduled_ms"] as? Double })
        #expect(scheduled.count == 3 && scheduled == scheduled.sorted() && scheduled[0] > 0)

        let bad = try await BatonProcess.run(["bench", "serve", "--url", "http://127.0.0.1:\(port)", "--slo", "ttft=2"])
        #expect(bad.status != 0 && bad.error.contains("needs a number with a unit"))
        kill(server.process.processIdentifier, SIGINT)
        _ = try await server.exitStatus(timeout: .seconds(20))
    }

    @Test("--compare starts the server it measures, names its command, and stops it")
    func compareStartsPeers() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-compare-it-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try await BatonProcess.run([
            "bench", "serve", "--compare", "--systems", "serve", "--threads", "1", "--context", "256", "--parallel", "2",
            "--concurrency", "2", "--requests", "2", "--prompt-words", "16", "--max-tokens", "3", "--out", directory, "--json",
        ], timeout: .seconds(180))
        #expect(run.status == 0, "\(run.error)")
        let system = try #require((try Self.lastJSON(run.output)["systems"] as? [[String: Any]])?.first)
        #expect(system["name"] as? String == "baton-serve")
        let command = try #require(system["command"] as? [String])
        #expect(command.contains("--threads") && command.contains("--max-batch"), "\(command)")
        #expect(((system["levels"] as? [[String: Any]])?.first?["succeeded"] as? Int) == 2)
        #expect(run.error.contains("starting baton-serve"))
        // The server is gone: its port no longer answers.
        let url = try #require(system["url"] as? String)
        let health = try? await HTTP.get(url + "/health")
        #expect(health == nil)
    }
}
