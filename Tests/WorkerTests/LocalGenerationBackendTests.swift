import Foundation
import GGUF
import Inference
import Router
import Testing
import Tokenization
import Worker

/// The in-process backend behind `baton serve`: prefill path for prompts, continuous batching on the decode path.
@Suite("Local generation backend", .serialized)
struct LocalGenerationBackendTests {
    struct Loaded: Sendable {
        let model: TransformerModel
        let tokenizer: Tokenizer
    }

    static let loaded: Result<Loaded, InferenceError> = {
        do {
            let file = try GGUFFile(path: try DefaultModel.resolve(nil))
            return .success(Loaded(model: try TransformerModel(file: file), tokenizer: try Tokenizer(gguf: file)))
        } catch let error as InferenceError {
            return .failure(error)
        } catch {
            return .failure(InferenceError(.invalidModel, "\(error)"))
        }
    }()

    static let prompts: [[Int32]] = [
        [504, 3575, 282, 4649, 314],  // "The capital of France is"
        [504, 3575, 282, 7042, 314, 253, 1345, 30],
        [1345, 30, 378, 3575, 282, 4649, 314, 7042, 30, 378],
    ]

    func backend(blocks: Int = 64, context: Int = 128) throws -> LocalGenerationBackend {
        let loaded = try Self.loaded.get()
        let backend = try LocalGenerationBackend(
            model: loaded.model, tokenizer: loaded.tokenizer, threads: 2, kvBlocks: blocks, maxBatch: 4,
            maxContext: context)
        backend.start()
        return backend
    }

    static func request(_ prompt: [Int32], maxTokens: Int, seed: UInt64? = nil, temperature: Float = 0) -> GenerationRequest {
        GenerationRequest(
            id: "test", promptTokens: prompt, maxTokens: maxTokens,
            sampling: Router.SamplingParameters(temperature: temperature, topP: 1, seed: seed))
    }

    /// Collects a stream's tokens and its summary.
    static func collect(_ stream: AsyncThrowingStream<GenerationEvent, any Error>) async throws -> ([Int32], GenerationSummary?) {
        var tokens: [Int32] = []
        var summary: GenerationSummary?
        for try await event in stream {
            switch event {
            case .token(let token): tokens.append(token.id)
            case .finished(let end): summary = end
            }
        }
        return (tokens, summary)
    }

    /// The same prompt through the one-request Generator (prefill path, then decode), greedy.
    func reference(_ prompt: [Int32], maxTokens: Int) throws -> [Int32] {
        let loaded = try Self.loaded.get()
        let cache = try PagedKVCache(layout: loaded.model.kvCacheLayout(), blockCount: 32)
        let generator = try Generator(
            tokenizer: loaded.tokenizer,
            prefill: try PrefillEngine(model: loaded.model, cache: cache, threads: 2, maxContext: 128),
            decode: try DecodeEngine(model: loaded.model, cache: cache, threads: 2, maxBatch: 1, maxContext: 128))
        return try generator.generate(
            prompt: prompt, parameters: Inference.SamplingParameters(temperature: 0, maxTokens: maxTokens)).tokens
    }

    @Test("a greedy request yields the same tokens as the one-request generator, then its usage")
    func greedyMatchesGenerator() async throws {
        let backend = try backend()
        defer { backend.shutdown() }
        let (tokens, summary) = try await Self.collect(try await backend.generate(Self.request(Self.prompts[0], maxTokens: 12)))
        #expect(tokens == (try reference(Self.prompts[0], maxTokens: 12)))
        #expect(summary == GenerationSummary(reason: .maxTokens, promptTokens: 5, completionTokens: 12))
        #expect(backend.freeKVBlocks == backend.totalKVBlocks)
    }

    @Test("concurrent requests batched together each get the tokens they would get alone")
    func continuousBatchingMatchesAlone() async throws {
        let backend = try backend()
        defer { backend.shutdown() }
        let lengths = [14, 6, 10]
        let results = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for (i, prompt) in Self.prompts.enumerated() {
                group.addTask {
                    (i, try await Self.collect(try await backend.generate(Self.request(prompt, maxTokens: lengths[i]))).0)
                }
            }
            var out = [Int: [Int32]]()
            for try await (i, tokens) in group { out[i] = tokens }
            return out
        }
        for (i, prompt) in Self.prompts.enumerated() {
            #expect(results[i] == (try reference(prompt, maxTokens: lengths[i])), "request \(i)")
        }
    }

    @Test("the same seed gives the same sampled tokens")
    func seededSamplingRepeats() async throws {
        let backend = try backend()
        defer { backend.shutdown() }
        let a = try await Self.collect(try await backend.generate(Self.request(Self.prompts[1], maxTokens: 10, seed: 42, temperature: 0.9))).0
        let b = try await Self.collect(try await backend.generate(Self.request(Self.prompts[1], maxTokens: 10, seed: 42, temperature: 0.9))).0
        #expect(a == b)
        #expect(a.count == 10)
    }

    @Test("a client that goes away cancels its request and frees its KV blocks")
    func cancellationFreesBlocks() async throws {
        let backend = try backend()
        defer { backend.shutdown() }
        let stream = try await backend.generate(Self.request(Self.prompts[2], maxTokens: 100))
        let consumer = Task {
            var seen = 0
            for try await event in stream {
                if case .token = event { seen += 1 }
                if seen == 3 { break }  // leaving the loop terminates the stream: the client is gone
            }
            return seen
        }
        #expect(try await consumer.value == 3)
        let deadline = ContinuousClock.now + .seconds(10)
        while backend.freeKVBlocks != backend.totalKVBlocks && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(backend.freeKVBlocks == backend.totalKVBlocks)
        // The backend still serves afterwards.
        #expect(try await Self.collect(try await backend.generate(Self.request(Self.prompts[0], maxTokens: 2))).0.count == 2)
    }

    @Test("a prompt past the context is refused as context_length_exceeded; one the cache cannot hold as overloaded")
    func refusals() async throws {
        let backend = try backend(blocks: 1, context: 64)
        defer { backend.shutdown() }
        let long = [Int32](repeating: 504, count: 64)
        let tooLong = await #expect(throws: RouterError.self) { _ = try await backend.generate(Self.request(long, maxTokens: 1)) }
        #expect(tooLong?.code == .contextLengthExceeded)
        let stream = try await backend.generate(Self.request([Int32](repeating: 504, count: 40), maxTokens: 1))
        let full = await #expect(throws: RouterError.self) { _ = try await Self.collect(stream) }
        #expect(full?.code == .overloaded)
    }

    @Test("after shutdown the backend reports itself unavailable and refuses work")
    func shutdownRefuses() async throws {
        let backend = try backend()
        #expect(await backend.health() == .ready)
        backend.shutdown()
        if case .ready = await backend.health() { Issue.record("still ready after shutdown") }
        let refused = await #expect(throws: RouterError.self) { _ = try await backend.generate(Self.request(Self.prompts[0], maxTokens: 1)) }
        #expect(refused?.code == .noWorkerAvailable)
    }
}
