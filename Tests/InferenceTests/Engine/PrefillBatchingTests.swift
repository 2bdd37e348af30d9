import Testing

@testable import Inference

/// Several prompts in one forward pass: the rows share the projections' products, attention stays per sequence.
@Suite("Batched prefill passes")
struct PrefillBatchingTests {
    static let prompts: [[Int32]] = [
        EngineTestModel.prompt,
        Array(EngineTestModel.prompt[..<7]),
        EngineTestModel.prompt.reversed(),
        [1],
    ]

    /// Each prompt alone on a fresh engine, as the reference.
    static func alone(_ model: TransformerModel, _ prompt: [Int32], roundsActivations: Bool) throws -> [Float] {
        let cache = try EngineTestModel.cache(model)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256, roundsActivations: roundsActivations)
        return try engine.prefill(prompt, sequence: cache.createSequence())
    }

    @Test("a pass over several prompts gives each the logits it gets alone, bit for bit", arguments: [false, true])
    func batchMatchesAlone(roundsActivations: Bool) throws {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256, roundsActivations: roundsActivations)
        let sequences = Self.prompts.map { _ in cache.createSequence() }
        let chunks = zip(sequences, Self.prompts).map { PrefillChunk(sequence: $0, tokens: $1, completesPrompt: true) }
        let batched = try engine.run(chunks)
        #expect(batched.count == Self.prompts.count)
        for (i, prompt) in Self.prompts.enumerated() {
            let reference = try Self.alone(model, prompt, roundsActivations: roundsActivations)
            #expect(batched[i].map(\.bitPattern) == reference.map(\.bitPattern), "prompt \(i)")
            #expect(try cache.tokenCount(sequences[i]) == prompt.count)
        }
    }

    @Test("a pass can continue one sequence while it starts another, each with the bits of one pass")
    func continuesAndStarts() throws {
        let model = try EngineTestModel.model()
        let prompt = EngineTestModel.prompt
        let cache = try EngineTestModel.cache(model)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256, roundsActivations: false)
        let continued = cache.createSequence(), fresh = cache.createSequence()
        _ = try engine.prefill(Array(prompt[..<9]), sequence: continued)
        let logits = try engine.run([
            PrefillChunk(sequence: fresh, tokens: Array(prompt[..<5]), completesPrompt: false),
            PrefillChunk(sequence: continued, tokens: Array(prompt[9...]), completesPrompt: true),
        ])
        #expect(logits.count == 1, "only the completing chunk returns logits")
        let reference = try Self.alone(model, prompt, roundsActivations: false)
        #expect(logits[0].map(\.bitPattern) == reference.map(\.bitPattern))
        // The fresh sequence's first chunk was stored at positions 0..<5: finishing it gives the whole prompt's logits.
        let finished = try engine.prefill(Array(prompt[5...]), sequence: fresh)
        #expect(finished.map(\.bitPattern) == reference.map(\.bitPattern))
        #expect(try cache.tokenCount(fresh) == prompt.count && cache.tokenCount(continued) == prompt.count)
    }

    @Test("a pass reports layers only for the chunks that complete their prompt, each layer once and in order")
    func layerReports() throws {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let a = cache.createSequence(), b = cache.createSequence(), c = cache.createSequence()
        var reports: [[Int]] = [[], [], []]
        var tokensAtReport: [Int] = []
        _ = try engine.run([
            PrefillChunk(sequence: a, tokens: Array(EngineTestModel.prompt[..<4]), completesPrompt: false),
            PrefillChunk(sequence: b, tokens: EngineTestModel.prompt, completesPrompt: true),
            PrefillChunk(sequence: c, tokens: [1, 2, 3], completesPrompt: true),
        ]) { chunk, layer in
            reports[chunk].append(layer)
            tokensAtReport.append((try? cache.tokenCount(chunk == 1 ? b : c)) ?? -1)
        }
        let layers = Array(0..<model.configuration.layerCount)
        #expect(reports[0].isEmpty)
        #expect(reports[1] == layers && reports[2] == layers)
        #expect(tokensAtReport.allSatisfy { $0 == EngineTestModel.prompt.count || $0 == 3 })
    }

    @Test("a pass that cannot run is refused and leaves every sequence as it was")
    func refusedPassChangesNothing() throws {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 3)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 1, chunkSize: 64, maxContext: 64)
        let a = cache.createSequence(), b = cache.createSequence()
        let prompt = EngineTestModel.prompt
        func refused(_ chunks: [PrefillChunk]) -> InferenceError? {
            #expect(throws: InferenceError.self) { _ = try engine.run(chunks) }
        }
        #expect(refused([])?.code == .invalidArgument)
        #expect(refused([PrefillChunk(sequence: a, tokens: [], completesPrompt: true)])?.code == .invalidArgument)
        let twice = refused([
            PrefillChunk(sequence: a, tokens: [1], completesPrompt: true), PrefillChunk(sequence: a, tokens: [2], completesPrompt: true),
        ])
        #expect(twice?.code == .invalidArgument)
        let wide = refused([
            PrefillChunk(sequence: a, tokens: prompt + prompt + prompt + prompt, completesPrompt: true),
            PrefillChunk(sequence: b, tokens: prompt, completesPrompt: true),
        ])
        #expect(wide?.message.contains("at most 64") == true)
        // Blocks of 16 tokens: a takes 1, b 2, and then c finds none of the 3 left.
        let c = cache.createSequence()
        let full = refused([
            PrefillChunk(sequence: a, tokens: prompt, completesPrompt: true),
            PrefillChunk(sequence: b, tokens: prompt + prompt, completesPrompt: true),
            PrefillChunk(sequence: c, tokens: [5, 6], completesPrompt: true),
        ])
        #expect(full?.code == .kvCacheFull)
        for sequence in [a, b, c] { #expect(try cache.tokenCount(sequence) == 0) }
        #expect(cache.freeBlockCount == 3, "the blocks taken before the failure are returned")
    }
}

@Suite("Prefill engines sharing f32 weights")
struct SharedPrefillWeightsTests {
    @Test("engines built on shared weights compute what an engine with its own weights computes")
    func sharedWeightsGiveSameLogits() throws {
        let model = try EngineTestModel.model()
        let prompt = EngineTestModel.prompt
        let shared = PrefillWeights(model: model, threads: 2)
        var results: [[Float]] = []
        for weights in [nil, shared, shared] {
            let cache = try EngineTestModel.cache(model)
            let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 64, weights: weights)
            if let weights { #expect(engine.weights === weights) }
            results.append(try engine.prefill(prompt, sequence: cache.createSequence()))
        }
        #expect(results[1] == results[0] && results[2] == results[0])
    }
}
