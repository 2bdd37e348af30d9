import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

@Suite("Models, health, metrics, tokenize")
struct UtilityEndpointsTests {
    @Test("GET /v1/models lists the served model and GET /v1/models/{id} returns it")
    func models() async throws {
        let (app, _, _) = try Fixtures.application()
        try await app.test(.router) { client in
            let list = try jsonObject(try await client.execute(uri: "/v1/models", method: .get).body)
            #expect(list["object"] as? String == "list")
            let data = try #require(list["data"] as? [[String: Any]])
            #expect(data.count == 1)
            #expect(data[0]["id"] as? String == Fixtures.modelID)
            #expect(data[0]["object"] as? String == "model")
            #expect(data[0]["owned_by"] as? String == "baton")
            #expect(data[0]["created"] is Int)
            let one = try await client.execute(uri: "/v1/models/\(Fixtures.modelID)", method: .get)
            #expect(one.status == .ok)
            let missing = try await client.execute(uri: "/v1/models/gpt-4", method: .get)
            try expectOpenAIError(missing, status: .notFound, code: "model_not_found", param: "model")
        }
    }

    @Test("GET /health is 200 when the backend can serve and 503 with the reason when not")
    func health() async throws {
        let (ready, _, _) = try Fixtures.application()
        try await ready.test(.router) { client in
            let response = try await client.execute(uri: "/health", method: .get)
            #expect(response.status == .ok)
            #expect(try jsonObject(response.body)["status"] as? String == "ok")
        }
        let (down, _, _) = try Fixtures.application { FakeBackend(tokenizer: $0, health: .unavailable(reason: "no decode worker")) }
        try await down.test(.router) { client in
            let response = try await client.execute(uri: "/health", method: .get)
            try expectOpenAIError(
                response, status: .serviceUnavailable, code: "no_worker_available", param: nil,
                messageContains: "no decode worker")
        }
    }

    @Test("GET /metrics exposes latency histograms, request counts and the KV hand-off a generation reported")
    func metrics() async throws {
        let metrics = RouterMetrics()
        let (app, _, _) = try Fixtures.application(
            backend: {
                FakeBackend(
                    tokenizer: $0,
                    handoff: KVHandoffSummary(transport: "shared-memory", bytes: 4096, seconds: 0.003, cachedTokens: 32, bytesNotShipped: 8192),
                    workers: ServingWorkers(prefill: "prefill-0", decode: "decode-1"))
            },
            metrics: metrics)
        try await app.test(.router) { client in
            _ = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(ChatCompletionsTests.chatBody()))
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok)
            let text = String(buffer: response.body)
            for expected in [
                "baton_router_time_to_first_token_seconds_bucket", "baton_router_time_to_first_token_seconds_count 1",
                "baton_router_inter_token_latency_seconds_bucket", "baton_router_request_duration_seconds_count 1",
                #"baton_router_requests_total{endpoint="/v1/chat/completions",status="200"} 1"#,
                "baton_router_requests_in_flight 0.0\n", "baton_router_requests_waiting 0.0\n",
                #"baton_router_kv_transfer_bytes_total{transport="shared-memory"} 4096"#,
                #"baton_router_kv_transfer_duration_seconds_count{transport="shared-memory"} 1"#,
                #"baton_router_kv_shipped_bytes_total{worker="decode-1"} 4096"#,
                #"baton_router_kv_not_shipped_bytes_total{worker="decode-1"} 8192"#,
                "# TYPE baton_router_time_to_first_token_seconds histogram",
            ] {
                #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
            }
        }
    }

    @Test("tokenize and detokenize round-trip through the real tokenizer, with pieces on request")
    func tokenizeRoundTrip() async throws {
        let (app, _, model) = try Fixtures.application()
        let text = "Hello, world! <|im_start|> ✓ naïve"
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/tokenize", method: .post, headers: jsonHeaders, body: try jsonBody(["content": text]))
            #expect(response.status == .ok)
            let tokens = try #require(try jsonObject(response.body)["tokens"] as? [Int])
            #expect(tokens.map(Int32.init) == model.tokenizer.encode(text, addSpecial: false, parseSpecial: true))
            #expect(tokens.contains(Int(model.tokenizer.tokenID(forText: "<|im_start|>") ?? -1)))

            let back = try await client.execute(
                uri: "/detokenize", method: .post, headers: jsonHeaders, body: try jsonBody(["tokens": tokens]))
            #expect(back.status == .ok)
            #expect(try jsonObject(back.body)["content"] as? String == text)

            let withPieces = try await client.execute(
                uri: "/tokenize", method: .post, headers: jsonHeaders,
                body: try jsonBody(["content": "Hello world", "with_pieces": true]))
            let pieces = try #require(try jsonObject(withPieces.body)["tokens"] as? [[String: Any]])
            #expect(pieces.compactMap { $0["piece"] as? String }.joined() == "Hello world")
            #expect(pieces.allSatisfy { $0["id"] is Int })

            let bad = try await client.execute(
                uri: "/detokenize", method: .post, headers: jsonHeaders, body: try jsonBody(["tokens": [1, 99_999_999]]))
            try expectOpenAIError(bad, status: .badRequest, code: "invalid_value", param: "tokens")
        }
    }
}
