import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

@Suite("Completions")
struct CompletionsTests {
    @Test("a text prompt is tokenized as is and the reply comes back as a text_completion")
    func textPrompt() async throws {
        let (app, backend, model) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(["model": Fixtures.modelID, "prompt": "Once upon a time", "max_tokens": 100]))
            #expect(response.status == .ok)
            let object = try jsonObject(response.body)
            #expect((object["id"] as? String)?.hasPrefix("cmpl-") == true)
            #expect(object["object"] as? String == "text_completion")
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            #expect(choice["text"] as? String == FakeBackend.defaultReply)
            #expect(choice["finish_reason"] as? String == "stop")
            #expect(choice["logprobs"] is NSNull)
            let request = try #require(fake.requests.first)
            #expect(request.prompt == model.tokenizer.encode("Once upon a time", addSpecial: true, parseSpecial: true))
            let usage = try #require(object["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == request.prompt.count)
        }
    }

    @Test("a token-array prompt reaches the backend unchanged, and echo prepends the prompt text")
    func tokenPromptWithEcho() async throws {
        let (app, backend, model) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        let tokens = model.tokenizer.encode("Hello there", addSpecial: false)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody([
                    "model": Fixtures.modelID, "prompt": tokens.map(Int.init), "echo": true, "max_tokens": 2,
                ]))
            #expect(response.status == .ok)
            let choice = try #require((try jsonObject(response.body)["choices"] as? [[String: Any]])?.first)
            let expected = "Hello there" + model.tokenizer.decode(Array(fake.replyTokens.prefix(2)))
            #expect(choice["text"] as? String == expected)
            #expect(choice["finish_reason"] as? String == "length")
            #expect(fake.requests.first?.prompt == tokens)
        }
    }

    @Test("legacy logprobs give tokens, token_logprobs, top_logprobs and text_offset")
    func legacyLogprobs() async throws {
        let (app, backend, _) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(["model": Fixtures.modelID, "prompt": "Hi", "logprobs": 1, "max_tokens": 4]))
            let choice = try #require((try jsonObject(response.body)["choices"] as? [[String: Any]])?.first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let tokens = try #require(logprobs["tokens"] as? [String])
            #expect(tokens.count == 4)
            #expect(tokens.joined() == choice["text"] as? String)
            #expect((logprobs["token_logprobs"] as? [Double])?.count == 4)
            #expect((logprobs["top_logprobs"] as? [[String: Double]])?.allSatisfy { $0.count == 1 } == true)
            let offsets = try #require(logprobs["text_offset"] as? [Int])
            #expect(offsets.first == 0)
            #expect(offsets == offsets.sorted())
            #expect(fake.requests.first?.sampling.logprobs == 1)
        }
    }

    @Test("a streamed completion sends text chunks, a finish chunk, usage and [DONE]")
    func streaming() async throws {
        let (app, _, _) = try Fixtures.application()
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody([
                    "model": Fixtures.modelID, "prompt": "Hi", "stream": true, "stream_options": ["include_usage": true],
                ]))
            #expect(response.status == .ok)
            let payloads = eventPayloads(response.body)
            #expect(payloads.last == "[DONE]")
            let chunks = try payloads.dropLast().map(parseJSON)
            #expect(chunks.allSatisfy { $0["object"] as? String == "text_completion" })
            let texts = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }
            #expect(texts.joined() == FakeBackend.defaultReply)
            let finish = try #require((chunks[chunks.count - 2]["choices"] as? [[String: Any]])?.first)
            #expect(finish["finish_reason"] as? String == "stop")
            #expect(chunks.last?["usage"] is [String: Any])
        }
    }
}
