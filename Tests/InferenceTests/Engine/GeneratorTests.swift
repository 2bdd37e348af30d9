import GGUF
import Testing
import Tokenization

@testable import Inference

@Suite("Generation")
struct GeneratorTests {
    static func generator(prefill: Bool = true) throws -> Generator {
        let model = try EngineTestModel.model()
        let tokenizer = try Tokenizer(gguf: model.file)
        let cache = try EngineTestModel.cache(model, blocks: 32)
        let decode = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: 256)
        let prefillEngine = prefill ? try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256) : nil
        return try Generator(tokenizer: tokenizer, prefill: prefillEngine, decode: decode)
    }

    static func prompt(_ generator: Generator, _ text: String) -> [Int32] {
        generator.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
    }

    @Test("greedy completion streams the text and stops at max tokens")
    func greedyCompletion() throws {
        let generator = try Self.generator()
        let tokens = Self.prompt(generator, "The capital of France is")
        var streamed = ""
        let result = try generator.generate(prompt: tokens, parameters: SamplingParameters(temperature: 0, maxTokens: 8)) {
            streamed += $0
        }
        #expect(result.text.hasPrefix(" Paris"))
        #expect(streamed == result.text)
        #expect(result.finishReason == .length)
        #expect(result.usage == TokenUsage(promptTokens: tokens.count, completionTokens: 8))
        #expect(result.tokens.count == 8)
        #expect(generator.decodeEngine.cache.freeBlockCount == generator.decodeEngine.cache.blockCount)
    }

    @Test("the prompt gives the same greedy text on either path")
    func pathsGiveSameText() throws {
        let parameters = SamplingParameters(temperature: 0, maxTokens: 4)
        let withPrefill = try Self.generator(prefill: true)
        let withoutPrefill = try Self.generator(prefill: false)
        let tokens = Self.prompt(withPrefill, "The capital of France is")
        #expect(try withPrefill.generate(prompt: tokens, parameters: parameters).text
            == withoutPrefill.generate(prompt: tokens, parameters: parameters).text)
    }

    @Test("a stop string ends generation and is never emitted")
    func stopString() throws {
        let generator = try Self.generator()
        let tokens = Self.prompt(generator, "1, 2, 3, 4, 5,")
        var streamed = ""
        let result = try generator.generate(
            prompt: tokens, parameters: SamplingParameters(temperature: 0, maxTokens: 32, stopStrings: [" 8"])
        ) { streamed += $0 }
        #expect(result.finishReason == .stopString(" 8"))
        #expect(result.text == " 6, 7,")
        #expect(streamed == result.text)
    }

    @Test("a chat reply ends at the end-of-generation token, which is not part of the text")
    func chatEndsAtEndOfGeneration() throws {
        let generator = try Self.generator()
        let model = try EngineTestModel.model()
        let chat = try ChatPrompt(file: model.file, tokenizer: generator.tokenizer)
        let tokens = try chat.tokens([.user("What is 2 + 2?")])
        #expect(try chat.render([.user("What is 2 + 2?")]).hasSuffix("<|im_start|>assistant\n"))
        let result = try generator.generate(prompt: tokens, parameters: SamplingParameters(temperature: 0, maxTokens: 256))
        #expect(result.finishReason == .endOfGeneration)
        #expect(!result.text.contains("<|im_end|>"))
        #expect(result.text.contains("4"))
    }

    @Test("the same seed gives the same tokens, with log-probabilities of each")
    func seededSamplingIsReproducible() throws {
        let generator = try Self.generator()
        let tokens = Self.prompt(generator, "Once upon a time")
        let parameters = SamplingParameters(temperature: 1.0, seed: 42, maxTokens: 12, logprobs: 3)
        let first = try generator.generate(prompt: tokens, parameters: parameters)
        let second = try generator.generate(prompt: tokens, parameters: parameters)
        #expect(first.tokens == second.tokens)
        #expect(first.seed == 42)
        #expect(first.logprobs.count == first.tokens.count)
        for (token, sampled) in zip(first.tokens, first.logprobs) {
            #expect(sampled.id == token)
            #expect((sampled.logprob ?? 1) <= 0)
            #expect(sampled.topLogprobs.count == 3)
        }
    }

    @Test("a prompt that does not fit the context is refused")
    func promptTooLong() throws {
        let generator = try Self.generator()
        let error = #expect(throws: InferenceError.self) {
            _ = try generator.generate(prompt: [Int32](repeating: 1, count: 300), parameters: .greedy)
        }
        #expect(error?.code == .contextOverflow)
    }
}
