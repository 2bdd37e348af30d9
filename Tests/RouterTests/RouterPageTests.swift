import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import Router
import Synchronization
import Testing

/// A cluster view with fixed documents that records the prompt lengths it was asked to explain.
final class FakeInsight: ClusterInsight {
    let status: String
    let failure: RouterError?
    let asked = Mutex<[Int]>([])

    init(status: String = #"{"workers": [], "events": 0}"#, failure: RouterError? = nil) {
        self.status = status
        self.failure = failure
    }

    func statusJSON() async throws(RouterError) -> [UInt8] {
        if let failure { throw failure }
        return Array(status.utf8)
    }

    func explainJSON(promptTokens: Int) async throws(RouterError) -> [UInt8] {
        if let failure { throw failure }
        asked.withLock { $0.append(promptTokens) }
        return Array(#"{"decision": {"prompt_tokens": \#(promptTokens)}, "text": "explained"}"#.utf8)
    }
}

@Suite("Router page")
struct RouterPageTests {
    @Test("the page and its files are served without an API key, under a policy that forbids inline scripts and other origins")
    func servesThePage() async throws {
        let (app, _, _) = try Fixtures.application(apiKeys: APIKeySet(keys: ["sk-page"]), cluster: FakeInsight())
        try await app.test(.router) { client in
            for (path, type) in [("/", "text/html"), ("/page/app.js", "text/javascript"), ("/page/style.css", "text/css")] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .ok, "\(path)")
                #expect(response.headers[.contentType]?.hasPrefix(type) == true, "\(path)")
                let policy = try #require(response.headers[.contentSecurityPolicy], "\(path)")
                #expect(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"))
                #expect(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"))
                #expect(response.headers[.xContentTypeOptions] == "nosniff")
                #expect(response.body.readableBytes > 500, "\(path) is nearly empty")
            }
            // The API behind the page still wants the key.
            let status = try await client.execute(uri: "/cluster/status", method: .get)
            try expectOpenAIError(status, status: .unauthorized, code: "invalid_api_key", param: nil)
            let keyed = try await client.execute(uri: "/cluster/status", method: .get, headers: [.authorization: "Bearer sk-page"])
            #expect(keyed.status == .ok)
        }
    }

    @Test("every file and endpoint the page refers to is served by the router")
    func pageReferencesResolve() async throws {
        let (app, _, _) = try Fixtures.application(cluster: FakeInsight())
        try await app.test(.router) { client in
            let html = String(buffer: try await client.execute(uri: "/", method: .get).body)
            let script = String(buffer: try await client.execute(uri: "/page/app.js", method: .get).body)
            // Local references in the HTML (src/href="/…") and the endpoints the script fetches ("/…" strings).
            let pattern = try Regex(#"(?:src|href)="(/[^"]*)"|(?:api|fetch)\("(/[^"]*)""#)
            var paths = Set<String>()
            for match in html.matches(of: pattern) + script.matches(of: pattern) {
                if let path = match.output[1].substring ?? match.output[2].substring { paths.insert(String(path)) }
            }
            #expect(paths.isSuperset(of: ["/page/app.js", "/page/style.css", "/metrics", "/health", "/v1/models", "/cluster/status"]))
            #expect(!html.contains("http://") && !html.contains("https://"), "the page must not load anything from elsewhere")
            for path in paths {
                let method: HTTPRequest.Method = ["/v1/chat/completions", "/cluster/explain"].contains(path) ? .post : .get
                let body = method == .post ? try jsonBody(["prompt_tokens": 1, "model": Fixtures.modelID,
                                                           "messages": [["role": "user", "content": "hi"]]]) : nil
                let response = try await client.execute(uri: path, method: method, headers: jsonHeaders, body: body)
                #expect(response.status == .ok, "\(method) \(path) answered \(response.status)")
            }
        }
    }

    @Test("the cluster status is placement's document as it is, and a server without a cluster answers 404")
    func clusterStatus() async throws {
        let document = #"{"workers": [{"name": "decode-0", "status": "lost"}], "events": 7}"#
        let (app, _, _) = try Fixtures.application(cluster: FakeInsight(status: document))
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/cluster/status", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json")
            #expect(String(buffer: response.body) == document)
        }
        let (local, _, _) = try Fixtures.application()
        try await local.test(.router) { client in
            let response = try await client.execute(uri: "/cluster/status", method: .get)
            try expectOpenAIError(response, status: .notFound, code: "not_found", param: nil, messageContains: "baton serve")
            let explain = try await client.execute(
                uri: "/cluster/explain", method: .post, headers: jsonHeaders, body: try jsonBody(["prompt_tokens": 5]))
            try expectOpenAIError(explain, status: .notFound, code: "not_found", param: nil)
        }
    }

    @Test("placement's refusals reach the page as OpenAI errors with their status")
    func clusterFailures() async throws {
        let insight = FakeInsight(failure: RouterError(.noWorkerAvailable, "placement service at 127.0.0.1:7400 did not answer"))
        let (app, _, _) = try Fixtures.application(cluster: insight)
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/cluster/status", method: .get)
            try expectOpenAIError(response, status: .serviceUnavailable, code: "no_worker_available", param: nil,
                                  messageContains: "did not answer")
        }
    }

    @Test("explain takes a prompt length, or measures a pasted prompt as a one-message chat, and refuses anything else")
    func explain() async throws {
        let insight = FakeInsight()
        let (app, _, model) = try Fixtures.application(cluster: insight)
        let text = "How long is this prompt, in tokens, once the chat template wraps it?"
        let rendered = try model.template.render(
            messages: [.init(role: "user", content: text)], addGenerationPrompt: true,
            bosToken: model.tokenizer.bosID.map { model.tokenizer.tokenText($0) } ?? "",
            eosToken: model.tokenizer.eosID.map { model.tokenizer.tokenText($0) } ?? "")
        let expected = model.tokenizer.encodePrompt(rendered).count
        try await app.test(.router) { client in
            let byLength = try await client.execute(
                uri: "/cluster/explain", method: .post, headers: jsonHeaders, body: try jsonBody(["prompt_tokens": 300]))
            #expect(byLength.status == .ok)
            #expect(try jsonObject(byLength.body)["text"] as? String == "explained")
            let byText = try await client.execute(
                uri: "/cluster/explain", method: .post, headers: jsonHeaders, body: try jsonBody(["prompt": text]))
            #expect(byText.status == .ok)
            #expect(insight.asked.withLock { $0 } == [300, expected])
            #expect(expected > text.split(separator: " ").count)

            for bad: [String: Any] in [[:], ["prompt_tokens": 3, "prompt": "x"], ["prompt_tokens": -1], ["prompt_tokens": 513]] {
                let response = try await client.execute(
                    uri: "/cluster/explain", method: .post, headers: jsonHeaders, body: try jsonBody(bad))
                try expectOpenAIError(response, status: .badRequest, code: "invalid_value", param: "prompt_tokens")
            }
            let wrongType = try await client.execute(
                uri: "/cluster/explain", method: .post, headers: jsonHeaders, body: try jsonBody(["prompt_tokens": "many"]))
            try expectOpenAIError(wrongType, status: .badRequest, code: "invalid_value", param: "prompt_tokens")
            #expect(insight.asked.withLock { $0.count } == 2)
        }
    }

    @Test("a cluster's reply names its prefill and decode workers and the KV hand-off; a local reply has no baton field")
    func servedBy() async throws {
        let workers = ServingWorkers(prefill: "prefill-0", decode: "decode-1")
        let handoff = KVHandoffSummary(
            transport: "shared-memory", bytes: 1_234_567, seconds: 0.0021, cachedTokens: 512, bytesNotShipped: 11_796_480)
        let (app, _, _) = try Fixtures.application(backend: { FakeBackend(tokenizer: $0, handoff: handoff, workers: workers) })
        try await app.test(.router) { client in
            let streamed = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(ChatCompletionsTests.chatBody(["stream": true])))
            let chunks = try eventPayloads(streamed.body).dropLast().map(parseJSON)
            let finishIndex = try #require(chunks.firstIndex {
                (($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String) != nil
            })
            #expect(chunks.enumerated().allSatisfy { $0.offset == finishIndex || $0.element["baton"] == nil })
            let baton = try #require(chunks[finishIndex]["baton"] as? [String: Any])
            #expect(baton["prefill_worker"] as? String == "prefill-0")
            #expect(baton["decode_worker"] as? String == "decode-1")
            #expect(baton["kv_transport"] as? String == "shared-memory")
            #expect(baton["kv_bytes"] as? Int == 1_234_567)
            #expect(baton["kv_transfer_ms"] as? Double == 2.1)
            #expect(baton["kv_cached_tokens"] as? Int == 512, "the prompt positions the decode worker held")
            #expect(baton["kv_bytes_not_shipped"] as? Int == 11_796_480)

            let whole = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try jsonBody(ChatCompletionsTests.chatBody()))
            let wholeBaton = try #require(try jsonObject(whole.body)["baton"] as? [String: Any])
            #expect(wholeBaton["decode_worker"] as? String == "decode-1")
        }
        let decodeOnly = ServingWorkers(prefill: nil, decode: "decode-0")
        let (alone, _, _) = try Fixtures.application(backend: { FakeBackend(tokenizer: $0, workers: decodeOnly) })
        try await alone.test(.router) { client in
            let whole = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try jsonBody(ChatCompletionsTests.chatBody()))
            let baton = try #require(try jsonObject(whole.body)["baton"] as? [String: Any])
            #expect(baton["prefill_worker"] is NSNull && baton["kv_transport"] is NSNull)
            #expect(baton["decode_worker"] as? String == "decode-0")
        }
        let (local, _, _) = try Fixtures.application()
        try await local.test(.router) { client in
            let whole = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try jsonBody(ChatCompletionsTests.chatBody()))
            #expect(try jsonObject(whole.body)["baton"] == nil)
        }
    }
}
