import Foundation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

@Suite("Live server")
struct LiveServerTests {
    @Test("over a real socket a streamed chat arrives as server-sent events ending in [DONE]")
    func streamingOverSocket() async throws {
        let (app, _, _) = try Fixtures.application { FakeBackend(tokenizer: $0, delay: .milliseconds(1)) }
        try await app.test(.live) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(ChatCompletionsTests.chatBody(["stream": true])))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let payloads = eventPayloads(response.body)
            #expect(payloads.last == "[DONE]")
            let chunks = try payloads.dropLast().map(parseJSON)
            let text = chunks.compactMap {
                (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String
            }.joined()
            #expect(text == FakeBackend.defaultReply)
        }
    }

    @Test("a client that disconnects mid-stream cancels the backend's stream, which stops generating")
    func disconnectCancelsBackend() async throws {
        let (app, backend, _) = try Fixtures.application {
            FakeBackend(tokenizer: $0, delay: .milliseconds(10), endless: true)
        }
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let raw = TestClient(host: "127.0.0.1", port: port)
            raw.connect()
            try await raw.executeAndDontWaitForResponse(TestClient.Request(
                "/v1/chat/completions", method: .post, authority: "localhost", headers: jsonHeaders,
                body: try jsonBody(ChatCompletionsTests.chatBody(["stream": true, "max_tokens": 400]))))
            try await waitUntil { fake.requests.first.map { fake.tokensSent($0.id) >= 3 } ?? false }
            let id = try #require(fake.requests.first?.id)
            #expect(!fake.wasCancelled(id))
            try await raw.shutdown()
            try await waitUntil { fake.wasCancelled(id) }
            let sentAtCancel = fake.tokensSent(id)
            try await Task.sleep(for: .milliseconds(100))
            #expect(fake.tokensSent(id) <= sentAtCancel + 1)
            #expect(sentAtCancel < 400)
        }
    }
}
