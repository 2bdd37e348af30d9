import Foundation
import Testing

/// KV-aware routing with real processes: `baton up` with two decode workers, their KV events reaching the router
/// through placement, and requests sharing a long prefix sent to the worker whose cache holds it.
@Suite("KV-aware routing (processes)")
struct PrefixRoutingProcessTests {
    /// A long, distinctive text (~300 tokens): the shared prefix of one conversation.
    static func preamble(_ topic: String) -> String {
        (1...24).map { "Rule \($0) of the \(topic) handbook: keep the \(topic) notes short, dated and signed." }
            .joined(separator: " ")
    }

    static func chat(_ port: Int, _ content: String) async throws -> String {
        let body = try String(decoding: JSONSerialization.data(withJSONObject: [
            "model": "SmolLM2-135M-Instruct.Q4_1", "max_tokens": 2, "temperature": 0,
            "messages": [["role": "user", "content": content]],
        ] as [String: Any]), as: UTF8.self)
        // A session of its own: concurrent requests must not queue behind one another in the client.
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/chat/completions")!)
        request.httpMethod = "POST"
        request.timeoutInterval = 120
        request.httpBody = Data(body.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        let (status, reply) = ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        #expect(status == 200, "\(reply)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])
        return try #require((json["baton"] as? [String: Any])?["decode_worker"] as? String, "\(reply)")
    }

    /// The router's `baton_router_prefix_index_blocks` for `worker`'s decode cache (-1: nothing trusted; nil: absent).
    static func indexedBlocks(_ metrics: String, _ worker: String) -> Double? {
        let prefix = #"baton_router_prefix_index_blocks{worker="\#(worker)",cache="decode"} "#
        return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
    }

    @Test("concurrent first turns spread over two idle decode workers, and each next turn goes where its prefix is cached")
    func secondTurnFollowsTheCache() async throws {
        let port = try OpenAIClientTests.freePort()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("baton-prefix-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        // Every prompt runs whole on its decode worker, so the decode workers' caches are the ones that matter; the two
        // workers share this box, so their measured bandwidths differ only by noise (as `baton up`'s own policy says).
        let policy = state + "/prefix-policy.yaml"
        try "disaggregation: {min_prompt_tokens: 100000}\nscoring: {decode: {bandwidth: 0}}\n"
            .write(toFile: policy, atomically: true, encoding: .utf8)
        let up = try BatonProcess([
            "up", "--port", "\(port)", "--state-dir", state, "--policy", policy, "--context", "1024", "--threads", "1",
            "--prefill-workers", "0", "--decode-workers", "2"
        ])
        defer { if up.process.isRunning { kill(up.process.processIdentifier, SIGKILL) } }
        try await up.wait(for: "the cluster to be ready", timeout: .seconds(180)) {
            $0.standardOutput.contains("http://127.0.0.1:\(port)/v1") || !$0.process.isRunning
        }
        #expect(up.process.isRunning, "\(up.standardError)")
        // Ready means one decode worker serves; the router's snapshot must hold both before the burst.
        let bothActive = try await HTTP.eventually(timeout: .seconds(60)) {
            let metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
            return ["decode-0", "decode-1"].allSatisfy { metrics.contains(#"baton_router_worker_queue_depth{worker="\#($0)""#) }
        }
        #expect(bothActive, "\(up.standardError)")

        // Two conversations start at once: the router counts the first it placed, so the second goes to the other worker.
        let (alpha, beta) = (Self.preamble("harbour"), Self.preamble("orchard"))
        async let first = Self.chat(port, alpha + " Question one: what comes first?")
        async let second = Self.chat(port, beta + " Question one: what comes first?")
        let (alphaWorker, betaWorker) = try await (first, second)
        #expect(Set([alphaWorker, betaWorker]) == ["decode-0", "decode-1"], "\(up.standardError)")

        // Each worker's KV events reach the router (heartbeat → placement → membership watch).
        let indexed = try await HTTP.eventually(timeout: .seconds(20)) {
            let metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
            return ["decode-0", "decode-1"].allSatisfy { (Self.indexedBlocks(metrics, $0) ?? -1) >= 16 }
        }
        let metricsAfterFirstTurns = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(indexed, "\(metricsAfterFirstTurns)")

        // The next turns share their conversation's ~300-token prefix: each goes where that prefix is cached, whatever
        // the names' order (one of the two is not the first name).
        #expect(try await Self.chat(port, beta + " Question two: what comes next?") == betaWorker)
        #expect(try await Self.chat(port, alpha + " Question two: what comes next?") == alphaWorker)

        // The explanation shows the overlap, and the workers report what their caches saved.
        let (status, explanation) = try await HTTP.post(
            "http://127.0.0.1:\(port)/cluster/explain", json: try String(decoding: JSONSerialization.data(
                withJSONObject: ["prompt": alpha + " Question three?"]), as: UTF8.self))
        #expect(status == 200, "\(explanation)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(explanation.utf8)) as? [String: Any])
        let decision = try #require(json["decision"] as? [String: Any])
        #expect(decision["decode"] as? String == alphaWorker, "\(json["text"] ?? "")")
        let candidates = try #require(decision["candidates"] as? [[String: Any]])
        let cached = candidates.first { $0["worker"] as? String == alphaWorker }
            .flatMap { ($0["score"] as? [String: Any])?["cached_tokens"] as? Int } ?? 0
        #expect(cached >= 256, "\(json["text"] ?? "")")
        let saved = try await HTTP.eventually(timeout: .seconds(10)) {
            let metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
            let line = #"baton_router_worker_cached_prompt_tokens{worker="\#(alphaWorker)",role="decode"} "#
            return metrics.split(separator: "\n").contains { $0.hasPrefix(line) && (Double($0.dropFirst(line.count)) ?? 0) >= 256 }
        }
        let metricsAfterSecondTurns = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(saved, "\(metricsAfterSecondTurns)")

        kill(up.process.processIdentifier, SIGINT)
        #expect(try await up.exitStatus(timeout: .seconds(60)) == 0, "\(up.standardError)")
    }
}

extension HTTP {
    /// Polls `condition` every 200 ms until it holds or `timeout` passes; returns whether it held.
    static func eventually(timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return try await condition()
    }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
