import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import Router
import Testing
import Tokenization

@Suite("Error responses")
struct ErrorResponsesTests {
    static func post(
        _ body: ByteBuffer, to uri: String = "/v1/chat/completions",
        backend: @escaping (Tokenizer) -> any GenerationBackend = { FakeBackend(tokenizer: $0) },
        configuration: RouterConfiguration = Fixtures.configuration()
    ) async throws -> TestResponse {
        let (app, _, _) = try Fixtures.application(backend: backend, configuration: configuration)
        return try await app.test(.router) { client in
            try await client.execute(uri: uri, method: .post, headers: jsonHeaders, body: body)
        }
    }

    static func chat(_ extra: [String: Any]) throws -> ByteBuffer {
        try jsonBody(ChatCompletionsTests.chatBody(extra))
    }

    @Test("malformed JSON is a 400 invalid_request_error with no param")
    func malformedJSON() async throws {
        let response = try await Self.post(ByteBuffer(string: #"{"model": "x", "messages": [ "#))
        try expectOpenAIError(response, status: .badRequest, code: "invalid_json", param: nil, messageContains: "JSON")
        let object = try jsonObject(response.body)
        #expect((object["error"] as? [String: Any])?["type"] as? String == "invalid_request_error")
    }

    @Test("a field of the wrong JSON type names the field")
    func wrongType() async throws {
        let response = try await Self.post(try Self.chat(["temperature": "hot"]))
        try expectOpenAIError(response, status: .badRequest, code: "invalid_value", param: "temperature")
    }

    @Test("an unknown model is a 404 model_not_found")
    func unknownModel() async throws {
        let response = try await Self.post(try Self.chat(["model": "gpt-4o"]))
        try expectOpenAIError(response, status: .notFound, code: "model_not_found", param: "model", messageContains: "gpt-4o")
    }

    @Test("a missing model is a 400 naming model")
    func missingModel() async throws {
        let response = try await Self.post(try jsonBody(["messages": [["role": "user", "content": "hi"]]]))
        try expectOpenAIError(response, status: .badRequest, code: "missing_required_parameter", param: "model")
    }

    @Test("a prompt longer than the context is a 400 context_length_exceeded giving both numbers")
    func contextLengthExceeded() async throws {
        let long = String(repeating: "word ", count: 200)
        let response = try await Self.post(
            try Self.chat(["messages": [["role": "user", "content": long]]]),
            configuration: Fixtures.configuration(contextLength: 64))
        try expectOpenAIError(
            response, status: .badRequest, code: "context_length_exceeded", param: "messages",
            messageContains: "maximum context length is 64 tokens")
        let message = (try jsonObject(response.body)["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(message.contains(#/resulted in \d{3} tokens/#))
    }

    @Test("max_tokens that cannot fit beside the prompt is a 400 naming the limit, never clamped silently")
    func maxTokensBeyondContext() async throws {
        let response = try await Self.post(
            try Self.chat(["max_tokens": 1_000_000_000_000]), configuration: Fixtures.configuration(contextLength: 64))
        try expectOpenAIError(
            response, status: .badRequest, code: "context_length_exceeded", param: "max_tokens",
            messageContains: "maximum context length is 64 tokens")
        let message = (try jsonObject(response.body)["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(message.contains("1000000000000 in the completion"))
        #expect(message.contains(#/at most \d+ here/#))
        // Without max_tokens the completion may run to the end of the context.
        let fits = try await Self.post(try Self.chat([:]), configuration: Fixtures.configuration(contextLength: 64))
        #expect(fits.status == .ok)
    }

    @Test("out-of-range parameters are 400s naming the parameter", arguments: [
        ("temperature", "2.5"), ("top_p", "1.5"), ("presence_penalty", "-3"), ("frequency_penalty", "2.1"),
        ("max_tokens", "0"), ("max_completion_tokens", "-1"), ("top_logprobs", "21"), ("logit_bias", #"{"abc": 1}"#),
        ("logit_bias", #"{"5": 101}"#), ("logit_bias", #"{"99999999": 1}"#), ("stop", #"["a", "b", "c", "d", "e"]"#),
        ("stop", #"[""]"#), ("n", "2"), ("stream_options", #"{"include_usage": true}"#),
    ])
    func outOfRange(name: String, json: String) async throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        var extra: [String: Any] = [name: value]
        if name == "top_logprobs" { extra["logprobs"] = true }
        let response = try await Self.post(try Self.chat(extra))
        try expectOpenAIError(response, status: .badRequest, code: "invalid_value", param: name)
    }

    @Test("n other than 1 is rejected with a message that says why")
    func nRejected() async throws {
        let response = try await Self.post(try Self.chat(["n": 3]))
        try expectOpenAIError(response, status: .badRequest, code: "invalid_value", param: "n", messageContains: "n must be 1")
    }

    @Test("empty messages, a missing role and an unknown role are 400s naming the message")
    func badMessages() async throws {
        let empty = try await Self.post(try Self.chat(["messages": []]))
        try expectOpenAIError(empty, status: .badRequest, code: "invalid_value", param: "messages")
        let noRole = try await Self.post(try Self.chat(["messages": [["content": "hi"]]]))
        try expectOpenAIError(noRole, status: .badRequest, code: "missing_required_parameter", param: "messages[0].role")
        let badRole = try await Self.post(try Self.chat(["messages": [["role": "user", "content": "a"], ["role": "wizard", "content": "b"]]]))
        try expectOpenAIError(badRole, status: .badRequest, code: "invalid_value", param: "messages[1].role", messageContains: "wizard")
        let image = try await Self.post(try Self.chat(["messages": [["role": "user", "content": [["type": "image_url"]]]]]))
        try expectOpenAIError(image, status: .badRequest, code: "invalid_value", param: "messages[0].content")
    }

    @Test("no worker available is a 503 and overload is a 429 with Retry-After")
    func backendRefusals() async throws {
        let unavailable = try await Self.post(try Self.chat([:])) {
            FakeBackend(tokenizer: $0, failure: GenerationError(.unavailable, "no decode worker is registered"))
        }
        try expectOpenAIError(unavailable, status: .serviceUnavailable, code: "no_worker_available", param: nil)
        let overloaded = try await Self.post(try Self.chat([:])) {
            FakeBackend(tokenizer: $0, failure: GenerationError(.overloaded, "TTFT target exceeded", retryAfterSeconds: 2))
        }
        try expectOpenAIError(overloaded, status: .tooManyRequests, code: "rate_limit_exceeded", param: nil)
        #expect(overloaded.headers[.retryAfter] == "2")
    }

    @Test("a request that outlives the request timeout is a 504 and its backend stream is cancelled")
    func timeout() async throws {
        var configuration = Fixtures.configuration()
        configuration.requestTimeout = .milliseconds(300)
        let (app, backend, _) = try Fixtures.application(
            backend: { FakeBackend(tokenizer: $0, delay: .milliseconds(20), endless: true) }, configuration: configuration)
        let fake = try #require(backend as? FakeBackend)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: try Self.chat(["max_tokens": 400]))
            try expectOpenAIError(response, status: .gatewayTimeout, code: "timeout", param: nil)
            let id = try #require(fake.requests.first?.id)
            try await waitUntil { fake.wasCancelled(id) }
        }
    }

    @Test("an unknown path is a 404 in OpenAI's error shape")
    func unknownPath() async throws {
        let response = try await Self.post(ByteBuffer(string: "{}"), to: "/v1/embeddings")
        try expectOpenAIError(response, status: .notFound, code: "not_found", param: nil, messageContains: "/v1/embeddings")
    }

    @Test("completions reject a missing prompt, best_of and out-of-vocabulary token prompts")
    func completionErrors() async throws {
        let missing = try await Self.post(try jsonBody(["model": Fixtures.modelID]), to: "/v1/completions")
        try expectOpenAIError(missing, status: .badRequest, code: "missing_required_parameter", param: "prompt")
        let bestOf = try await Self.post(try jsonBody(["model": Fixtures.modelID, "prompt": "a", "best_of": 2]), to: "/v1/completions")
        try expectOpenAIError(bestOf, status: .badRequest, code: "invalid_value", param: "best_of")
        let badTokens = try await Self.post(try jsonBody(["model": Fixtures.modelID, "prompt": [1, 50_000_000]]), to: "/v1/completions")
        try expectOpenAIError(badTokens, status: .badRequest, code: "invalid_value", param: "prompt")
    }

    @Test("router errors print their code, message, parameter and cause")
    func errorDescription() {
        let error = RouterError(.invalidParameter, "temperature must be in 0...2, got 3", param: "temperature")
        #expect(error.description == "invalid_value: temperature must be in 0...2, got 3 (param: temperature)")
        #expect(RouterError.Code.overloaded.httpStatus == 429)
        #expect(RouterError.Code.noWorkerAvailable.httpStatus == 503)
        #expect(RouterError.wrapping(CancellationError()).code == .internalError)
    }
}
