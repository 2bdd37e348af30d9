import Foundation
import Testing

/// `baton up` as a new user runs it: four real processes, mutual TLS between them, the official `openai`
/// client in front, Ctrl-C at the end.
@Suite("baton up")
struct ClusterUpTests {
    @Test("baton up serves the openai client through the prefill/decode split and Ctrl-C stops every process")
    func upServesTheOpenAIClient() async throws {
        let python = try OpenAIClientTests.python()
        let port = try OpenAIClientTests.freePort()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("baton-up-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let up = try BatonProcess(["up", "--port", "\(port)", "--state-dir", state, "--context", "512", "--threads", "1"])
        defer { if up.process.isRunning { kill(up.process.processIdentifier, SIGKILL) } }
        try await up.wait(for: "the cluster to be ready", timeout: .seconds(120)) {
            $0.standardOutput.contains("http://127.0.0.1:\(port)/v1") || !$0.process.isRunning
        }
        #expect(up.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "http://127.0.0.1:\(port)/v1")
        let children = Self.childPIDs(up.standardError)
        #expect(Set(children.keys) == ["placement", "prefill-0", "decode-0", "router"], "\(up.standardError)")

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/openai_client_check.py")
        let (status, report) = try await Self.runPython(python, [script.path, "http://127.0.0.1:\(port)/v1", "SmolLM2-135M-Instruct.Q4_1"])
        #expect(status == 0, "openai client checks:\n\(report)\nbaton up stderr:\n\(up.standardError)")
        #expect(report.contains("0 failed"))

        // Every request went through the split: prefill-0 prefilled, decode-0 decoded, KV moved between them.
        let metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.contains(#"baton_router_worker_requests_total{worker="prefill-0",role="prefill"}"#), "\(metrics)")
        #expect(metrics.contains(#"baton_router_worker_requests_total{worker="decode-0",role="decode"}"#))
        #expect(metrics.contains(#"baton_router_kv_transfer_bytes_total{transport="shared-memory"}"#))

        // The cluster's own view, over mutual TLS with the router's certificate.
        let placement = try #require(Self.placementAddress(up.standardError))
        let cluster = try await BatonProcess.run([
            "cluster", "status", "--placement", placement, "--certs", state + "/certs", "--node", "router", "--json",
        ])
        #expect(cluster.status == 0, "\(cluster.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(cluster.output.utf8)) as? [String: Any])
        let workers = try #require(json["workers"] as? [[String: Any]])
        #expect(Set(workers.compactMap { $0["name"] as? String }) == ["prefill-0", "decode-0"])
        // Each worker's device profile says what the box is: the kernels' ISA path (as `baton inspect` reports it for
        // this machine) and its cores, in the JSON and in the table.
        let inspect = try await BatonProcess.run(["inspect", "--json"])
        let kernels = try #require((try JSONSerialization.jsonObject(with: Data(inspect.output.utf8)) as? [String: Any])?["kernels"] as? [String: Any])
        let isa = try #require(kernels["isa"] as? String)
        for worker in workers {
            let profile = try #require(worker["profile"] as? [String: Any])
            #expect(profile["isa"] as? String == isa, "\(worker)")
            #expect((profile["cores"] as? Int ?? 0) >= 1, "\(worker)")
            // Each worker process says which one it is, so a restarted worker is told from its former self.
            #expect((worker["incarnation"] as? String)?.contains("-") == true, "\(worker)")
        }
        let table = try await BatonProcess.run(["cluster", "status", "--placement", placement, "--certs", state + "/certs", "--node", "router"])
        #expect(table.output.contains("ISA") && table.output.contains("CORES"), "\(table.output)")
        #expect(table.output.split(separator: "\n").filter { $0.hasPrefix("decode-0") || $0.hasPrefix("prefill-0") }
            .allSatisfy { $0.contains("  \(isa)  ") }, "\(table.output)")

        // Log-probabilities survive the split: the first token's come from the prefill worker, the rest from decode.
        // Greedy picks the most likely token, so each chosen token's logprob is its best alternative's.
        let (logprobStatus, logprobBody) = try await HTTP.post("http://127.0.0.1:\(port)/v1/chat/completions", json: """
            {"model": "SmolLM2-135M-Instruct.Q4_1", "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 2,
             "messages": [{"role": "user", "content": "Name a colour."}]}
            """)
        #expect(logprobStatus == 200, "\(logprobBody)")
        let logprobJSON = try #require(try JSONSerialization.jsonObject(with: Data(logprobBody.utf8)) as? [String: Any])
        let choice = try #require((logprobJSON["choices"] as? [[String: Any]])?.first)
        let content = try #require((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        #expect(!content.isEmpty)
        for entry in content {
            let top = try #require(entry["top_logprobs"] as? [[String: Any]])
            let logprob = try #require(entry["logprob"] as? Double)
            #expect(top.count == 2 && logprob < 0, "\(entry)")
            #expect(abs(logprob - (top.first?["logprob"] as? Double ?? 1)) < 1e-4, "\(entry)")
        }

        // The serving benchmark against it: every request succeeds, and the figures hang together.
        let bench = try await BatonProcess.run([
            "bench", "serve", "--url", "http://127.0.0.1:\(port)", "--concurrency", "1,2", "--requests", "4",
            "--max-tokens", "6", "--prompt-words", "40", "--json",
        ], timeout: .seconds(120))
        #expect(bench.status == 0, "\(bench.error)")
        let benchJSON = try #require(
            bench.output.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        let system = try #require((benchJSON["systems"] as? [[String: Any]])?.first)
        let levels = try #require(system["levels"] as? [[String: Any]])
        #expect(levels.map { $0["concurrency"] as? Int } == [1, 2])
        for level in levels {
            #expect(level["succeeded"] as? Int == 4, "\(level)")
            let ttft = try #require(level["ttft_ms"] as? [String: Double]), e2e = try #require(level["e2e_ms"] as? [String: Double])
            #expect(ttft["p50"]! > 0 && ttft["p50"]! <= e2e["p50"]!, "\(level)")
            #expect((level["output_tokens_per_second"] as? Double ?? 0) > 0)
        }

        // Ctrl-C: `baton up` stops its children (they run in their own process group) and exits 0.
        kill(up.process.processIdentifier, SIGINT)
        #expect(try await up.exitStatus(timeout: .seconds(60)) == 0, "\(up.standardError)")
        for (name, pid) in children {
            #expect(kill(pid, 0) != 0, "\(name) (pid \(pid)) is still running after Ctrl-C")
        }
    }

    /// "[up] started NAME (pid N)" lines.
    static func childPIDs(_ log: String) -> [String: pid_t] {
        var result: [String: pid_t] = [:]
        for line in log.split(separator: "\n") where line.hasPrefix("[up] started ") {
            let parts = line.dropFirst("[up] started ".count).split(separator: " ")
            if parts.count >= 3, let pid = pid_t(parts[2].dropLast()) { result[String(parts[0])] = pid }
        }
        return result
    }

    /// The address in "[up] cluster status: … --placement HOST:PORT …".
    static func placementAddress(_ log: String) -> String? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("cluster status:") }) else { return nil }
        let words = line.split(separator: " ")
        guard let index = words.firstIndex(of: "--placement"), index + 1 < words.count else { return nil }
        return String(words[index + 1])
    }

    static func runPython(_ python: String, _ arguments: [String], timeout: Duration = .seconds(180)) async throws -> (Int32, String) {
        let client = Process()
        client.executableURL = URL(fileURLWithPath: python)
        client.arguments = arguments
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("baton-py-\(UUID().uuidString).out")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        client.standardOutput = handle
        client.standardError = handle
        try client.run()
        let deadline = ContinuousClock.now + timeout
        while client.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        if client.isRunning { client.terminate() }
        client.waitUntilExit()
        return (client.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}

/// Plain HTTP/1.1 requests to the router, for tests.
enum HTTP {
    static func get(_ url: String) async throws -> String {
        try await request(url, method: "GET", body: nil).body
    }

    static func post(_ url: String, json: String) async throws -> (status: Int, body: String) {
        try await request(url, method: "POST", body: json)
    }

    static func request(_ url: String, method: String, body: String?) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
