import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

@Suite("Chat completions")
struct ChatCompletionsTests {
    static func chatBody(_ extra: [String: Any] = [:]) -> [String: Any] {
        var body: [String: Any] = [
            "model": Fixtures.modelID,
            "messages": [["role": "system", "content": "You are terse."], ["role": "user", "content": "Say something."]],
        ]
        for (key, value) in extra { body[key] = value }
        return body
    }

    @Test("a non-streaming chat completion returns OpenAI's shape with the backend's text and right usage")
    func nonStreaming() async throws {
        let (app, backend, model) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try jsonBody(Self.chatBody()))
            #expect(response.status == .ok)
            let object = try jsonObject(response.body)
            let id = try #require(object["id"] as? String)
            #expect(id.hasPrefix("chatcmpl-"))
            #expect(object["object"] as? String == "chat.completion")
            #expect(object["model"] as? String == Fixtures.modelID)
            #expect((object["created"] as? Int ?? 0) > 1_700_000_000)
            let choices = try #require(object["choices"] as? [[String: Any]])
            #expect(choices.count == 1)
            #expect(choices[0]["index"] as? Int == 0)
            #expect(choices[0]["finish_reason"] as? String == "stop")
            #expect(choices[0]["logprobs"] is NSNull)
            let message = try #require(choices[0]["message"] as? [String: Any])
            #expect(message["role"] as? String == "assistant")
            #expect(message["content"] as? String == FakeBackend.defaultReply)

            let request = try #require(fake.requests.first)
            #expect(request.id == id)
            let prompt = model.tokenizer.decode(request.prompt, renderSpecial: true)
            #expect(prompt.contains("<|im_start|>user\nSay something.<|im_end|>"))
            #expect(prompt.hasSuffix("<|im_start|>assistant\n"))
            #expect(request.maxNewTokens == 64)

            let usage = try #require(object["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == request.prompt.count)
            // The reply's tokens plus the end-of-generation token.
            #expect(usage["completion_tokens"] as? Int == fake.replyTokens.count + 1)
            #expect(usage["total_tokens"] as? Int == request.prompt.count + fake.replyTokens.count + 1)
            #expect(fake.wasCancelled(id) == false)
        }
    }

    @Test("a model without a chat template answers chat with a 400 that says how to give one, and completions still work")
    func noChatTemplate() async throws {
        let (app, backend, _) = try Fixtures.application(withoutTemplate: true)
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let chat = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try jsonBody(Self.chatBody()))
            #expect(chat.status == .badRequest)
            let error = try #require(try jsonObject(chat.body)["error"] as? [String: Any])
            #expect(error["code"] as? String == "chat_template_missing")
            #expect(error["type"] as? String == "invalid_request_error")
            let message = try #require(error["message"] as? String)
            #expect(message.contains("--chat-template FILE") && message.contains("/v1/completions"))
            #expect(fake.requests.isEmpty)

            let completion = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(["model": Fixtures.modelID, "prompt": "Once upon a time"]))
            #expect(completion.status == .ok)
            #expect(fake.requests.count == 1)
        }
    }

    @Test("max_completion_tokens caps the output and finish_reason becomes length")
    func maxTokensGivesLength() async throws {
        let (app, backend, model) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody(["max_completion_tokens": 3, "max_tokens": 50])))
            #expect(response.status == .ok)
            let object = try jsonObject(response.body)
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            #expect(choice["finish_reason"] as? String == "length")
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["content"] as? String == model.tokenizer.decode(Array(fake.replyTokens.prefix(3))))
            #expect((object["usage"] as? [String: Any])?["completion_tokens"] as? Int == 3)
            #expect(fake.requests.first?.maxNewTokens == 3)
        }
    }

    @Test("sampling parameters and logit_bias reach the backend as given")
    func parametersPassThrough() async throws {
        let (app, backend, _) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody([
                    "temperature": 0.5, "top_p": 0.9, "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -1,
                    "logit_bias": ["17": -100, "200": 5.5], "stop": ["zzz", "\n\n"], "user": "someone", "n": 1,
                ])))
            #expect(response.status == .ok)
            let request = try #require(fake.requests.first)
            #expect(request.sampling == SamplingParameters(
                temperature: 0.5, topP: 0.9, frequencyPenalty: -1, presencePenalty: 0.5,
                logitBias: [17: -100, 200: 5.5], seed: 42))
            // Stop strings are the router's to enforce (the backend deals in token ids only).
            #expect(try jsonObject(response.body)["choices"] != nil)
        }
    }

    @Test("a stop string truncates the text, finishes with stop and cancels the backend")
    func stopStringStops() async throws {
        let (app, backend, _) = try Fixtures.application {
            FakeBackend(tokenizer: $0, delay: .milliseconds(2), endless: true)
        }
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody(["stop": "fox jumps", "max_tokens": 60])))
            #expect(response.status == .ok)
            let object = try jsonObject(response.body)
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            #expect((choice["message"] as? [String: Any])?["content"] as? String == "The quick brown ")
            #expect(choice["finish_reason"] as? String == "stop")
            let request = try #require(fake.requests.first)
            try await waitUntil { fake.wasCancelled(request.id) }
            #expect(fake.tokensSent(request.id) < 60)
        }
    }

    @Test("logprobs and top_logprobs come back per token with text, bytes and alternatives")
    func logprobs() async throws {
        let (app, backend, model) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody(["logprobs": true, "top_logprobs": 2])))
            #expect(response.status == .ok)
            let object = try jsonObject(response.body)
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            let content = try #require((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            // End-of-generation tokens carry no logprobs entry.
            #expect(content.count == fake.replyTokens.count)
            let first = content[0]
            let firstBytes = model.tokenizer.piece(fake.replyTokens[0])
            #expect(first["token"] as? String == String(decoding: firstBytes, as: UTF8.self))
            #expect((first["bytes"] as? [Int])?.map { UInt8($0) } == firstBytes)
            #expect(abs((first["logprob"] as? Double ?? 0) - Double(FakeBackend.logprob(index: 0))) < 1e-6)
            let top = try #require(first["top_logprobs"] as? [[String: Any]])
            #expect(top.count == 2)
            #expect(Set(top[0].keys) == ["token", "logprob", "bytes"])
            #expect(fake.requests.first?.sampling.logprobs != nil)
            #expect(fake.requests.first?.sampling.logprobs == 2)
        }
    }

    @Test("a streamed chat sends the role first, the text in deltas, the finish reason, usage, then [DONE]")
    func streaming() async throws {
        let (app, backend, _) = try Fixtures.application()
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody(["stream": true, "stream_options": ["include_usage": true]])))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let payloads = eventPayloads(response.body)
            #expect(payloads.last == "[DONE]")
            let chunks = try payloads.dropLast().map(parseJSON)
            #expect(chunks.count >= 4)
            let ids = Set(chunks.compactMap { $0["id"] as? String })
            #expect(ids.count == 1)
            #expect(ids.first?.hasPrefix("chatcmpl-") == true)
            #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })

            let first = try #require((chunks[0]["choices"] as? [[String: Any]])?.first)
            #expect((first["delta"] as? [String: Any])?["role"] as? String == "assistant")
            #expect(first["finish_reason"] is NSNull)

            let usageChunk = try #require(chunks.last)
            #expect((usageChunk["choices"] as? [Any])?.isEmpty == true)
            let usage = try #require(usageChunk["usage"] as? [String: Any])
            #expect(usage["completion_tokens"] as? Int == fake.replyTokens.count + 1)
            #expect(usage["prompt_tokens"] as? Int == fake.requests.first?.prompt.count)

            let finishChunk = chunks[chunks.count - 2]
            let finishChoice = try #require((finishChunk["choices"] as? [[String: Any]])?.first)
            #expect(finishChoice["finish_reason"] as? String == "stop")
            #expect((finishChoice["delta"] as? [String: Any])?.isEmpty == true)

            var text = ""
            for chunk in chunks.dropFirst().dropLast(2) {
                #expect(chunk["usage"] is NSNull)
                let choice = try #require((chunk["choices"] as? [[String: Any]])?.first)
                #expect(choice["finish_reason"] is NSNull)
                let delta = try #require(choice["delta"] as? [String: Any])
                #expect(delta["role"] == nil)
                text += delta["content"] as? String ?? ""
            }
            #expect(text == FakeBackend.defaultReply)
        }
    }

    @Test("a streamed chat without include_usage sends no usage field")
    func streamingWithoutUsage() async throws {
        let (app, _, _) = try Fixtures.application()
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders,
                body: try jsonBody(Self.chatBody(["stream": true])))
            let chunks = try eventPayloads(response.body).dropLast().map(parseJSON)
            #expect(chunks.allSatisfy { $0["usage"] == nil })
            let last = try #require((chunks.last?["choices"] as? [[String: Any]])?.first)
            #expect(last["finish_reason"] as? String == "stop")
        }
    }
}

/// Polls `condition` for up to two seconds (cancellation reaches the backend asynchronously).
func waitUntil(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for _ in 0..<200 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within 2 s", sourceLocation: sourceLocation)
}
