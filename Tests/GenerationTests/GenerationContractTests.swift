import Generation
import Synchronization
import Testing

/// The values every layer of a request's path shares, and their checks at the edge.
@Suite("Generation contract")
struct GenerationContractTests {
    static func request(prompt: Int = 10, maxTokens: Int = 5, seed: UInt64? = 1) -> GenerationRequest {
        GenerationRequest(
            id: "r", prompt: Array(repeating: 3, count: prompt), maxNewTokens: maxTokens,
            sampling: SamplingParameters(temperature: 0.7, seed: seed))
    }

    @Test("a request that fits is valid; the prompt or max_tokens past the context is named with the limit")
    func contextChecks() throws {
        _ = try Self.request().validated(vocabularySize: 100, contextLength: 15)
        let prompt = #expect(throws: GenerationError.self) {
            _ = try Self.request(prompt: 20).validated(vocabularySize: 100, contextLength: 16)
        }
        #expect(prompt?.code == .contextLengthExceeded && prompt?.param == "prompt")
        #expect(prompt?.message.contains("resulted in 20 tokens") == true)
        let both = #expect(throws: GenerationError.self) {
            _ = try Self.request(maxTokens: 1_000_000).validated(vocabularySize: 100, contextLength: 16)
        }
        #expect(both?.code == .contextLengthExceeded && both?.param == "max_tokens")
        #expect(both?.message.contains("1000010 tokens (10 in the prompt, 1000000 in the completion)") == true)
        #expect(both?.message.contains("at most 6 here") == true)
    }

    /// One broken field each, with the parameter its error must name.
    static let brokenFields: [(String, String)] = [
        ("empty id", "id"), ("long id", "id"), ("empty prompt", "prompt"), ("prompt token", "prompt"),
        ("max tokens", "max_tokens"), ("no seed", "seed"), ("temperature", "temperature"), ("top p", "top_p"),
        ("logprobs", "top_logprobs"), ("logit bias", "logit_bias"), ("stop token", "stop token id"),
    ]

    @Test("bad fields are invalid arguments naming the field", arguments: brokenFields)
    func invalidFields(broken: String, param: String) {
        var request = Self.request()
        switch broken {
        case "empty id": request.id = ""
        case "long id": request.id = String(repeating: "x", count: 257)
        case "empty prompt": request.prompt = []
        case "prompt token": request.prompt[0] = 100
        case "max tokens": request.maxNewTokens = 0
        case "no seed": request.sampling.seed = nil
        case "temperature": request.sampling.temperature = .nan
        case "top p": request.sampling.topP = 0
        case "logprobs": request.sampling.logprobs = 21
        case "logit bias": request.sampling.logitBias = [100: 1]
        default: request.stopTokenIDs = [-1]
        }
        let error = #expect(throws: GenerationError.self) { _ = try request.validated(vocabularySize: 100, contextLength: 64) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.param == param, "\(broken): \(error?.message ?? "")")
    }

    @Test("a state with every allowed token generated, a token outside the vocabulary or a zero generator is refused")
    func stateChecks() throws {
        var state = GenerationState(request: Self.request(), generated: [1, 2], random: RandomState(1, 2, 3, 4))
        _ = try state.validated(vocabularySize: 100, contextLength: 64)
        #expect(state.remainingTokens == 3)
        state.generated = [1, 2, 3, 4, 5]
        #expect(throws: GenerationError.self) { _ = try state.validated(vocabularySize: 100, contextLength: 64) }
        state.generated = [1, 100]
        #expect(throws: GenerationError.self) { _ = try state.validated(vocabularySize: 100, contextLength: 64) }
        state.generated = [1]
        state.random = RandomState(0, 0, 0, 0)
        #expect(throws: GenerationError.self) { _ = try state.validated(vocabularySize: 100, contextLength: 64) }
    }

    @Test("appending a token records it and the generator state after it; a greedy token keeps the last state")
    func append() {
        var state = GenerationState(request: Self.request())
        state.append(GeneratedToken(id: 4, random: RandomState(1, 1, 1, 1)))
        state.append(GeneratedToken(id: 5))
        #expect(state.generated == [4, 5])
        #expect(state.random == RandomState(1, 1, 1, 1))
    }

    @Test("finish reasons map to OpenAI's stop and length")
    func finishReasons() {
        #expect(FinishReason.allCases.map(\.openAIValue) == ["stop", "stop", "stop", "length", "length"])
    }

    @Test("a stream yields its events; cancelling it, or dropping it unfinished, stops the generation once")
    func streamCancellation() async throws {
        let cancels = Mutex<[String]>([])
        func stream(_ events: [GenerationEvent]) -> GenerationStream {
            let remaining = Mutex(events)
            return GenerationStream(
                next: { remaining.withLock { $0.isEmpty ? nil : $0.removeFirst() } },
                cancel: { reason in cancels.withLock { $0.append(reason) } })
        }
        let finished = GenerationEvent.finished(GenerationSummary(reason: .maxTokens, promptTokens: 1, completionTokens: 1))
        var seen = 0
        for try await _ in stream([.token(GeneratedToken(id: 1)), finished]) { seen += 1 }
        #expect(seen == 2)
        #expect(cancels.withLock { $0 }.isEmpty, "a finished stream is never cancelled")

        let explicit = stream([.token(GeneratedToken(id: 1))])
        explicit.cancel(reason: "stop string")
        explicit.cancel(reason: "again")
        #expect(cancels.withLock { $0 } == ["stop string"])

        do {
            let dropped = stream([.token(GeneratedToken(id: 1)), finished])
            for try await _ in dropped { break }
        }
        #expect(cancels.withLock { $0 } == ["stop string", "the consumer went away"])
    }
}
