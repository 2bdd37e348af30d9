import Testing

@testable import Inference

/// Continuous batching: a step over several sequences gives each one exactly what running it alone gives, bit for
/// bit on every ISA (each row's products are its own: 8-bit activations, integer block sums, a fixed order).
@Suite("Batched decode")
struct DecodeBatchingTests {
    static let prompts: [[Int32]] = [
        [504, 3575, 282, 4649, 314],
        [11147, 2115, 253, 655, 28, 281, 253, 1165, 5274, 28],
        [1134, 36838, 30, 105, 2],
    ]

    /// Greedy tokens and per-step logits of one sequence run alone for `steps` steps.
    static func alone(_ model: TransformerModel, prompt: [Int32], steps: Int) throws -> (tokens: [Int32], logits: [[Float]]) {
        let cache = try EngineTestModel.cache(model)
        let engine = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 8, maxContext: 128)
        let sequence = cache.createSequence()
        var logits = try engine.ingest(prompt, sequence: sequence)
        var tokens: [Int32] = []
        var history: [[Float]] = []
        for _ in 0..<steps {
            let token = argmax(logits)
            tokens.append(token)
            try engine.step([DecodeInput(sequence: sequence, token: token)])
            logits = engine.logits(row: 0)
            history.append(logits)
        }
        return (tokens, history)
    }

    @Test("sequences that join and leave between steps decode as if alone")
    func joinAndLeave() throws {
        let model = try EngineTestModel.model()
        let steps = 6
        let references = try Self.prompts.map { try Self.alone(model, prompt: $0, steps: steps) }

        let cache = try EngineTestModel.cache(model)
        let engine = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 8, maxContext: 128)
        // Sequence s joins at step joinAt[s] (after ingesting its prompt) and leaves after `steps` steps.
        let joinAt = [0, 2, 3]
        var sequences: [SequenceID?] = [nil, nil, nil]
        var next: [Int32] = [0, 0, 0]
        var done = [0, 0, 0]
        var produced: [[Int32]] = [[], [], []]
        var logits: [[[Float]]] = [[], [], []]
        var clock = 0
        while done.contains(where: { $0 < steps }) {
            for s in 0..<3 where joinAt[s] == clock {
                let sequence = cache.createSequence()
                sequences[s] = sequence
                next[s] = argmax(try engine.ingest(Self.prompts[s], sequence: sequence))
            }
            let active = (0..<3).filter { sequences[$0] != nil && done[$0] < steps }
            try engine.step(active.map { DecodeInput(sequence: sequences[$0]!, token: next[$0]) })
            for (row, s) in active.enumerated() {
                produced[s].append(next[s])
                let rowLogits = engine.logits(row: row)
                logits[s].append(rowLogits)
                next[s] = argmax(rowLogits)
                #expect(engine.argmax(row: row) == next[s])
                done[s] += 1
                if done[s] == steps {
                    cache.free(sequences[s]!)
                }
            }
            clock += 1
        }
        for s in 0..<3 {
            #expect(produced[s] == references[s].tokens, "sequence \(s)")
            for step in 0..<steps {
                let difference = maxAbsDifference(logits[s][step], references[s].logits[step])
                #expect(difference == 0, "sequence \(s) step \(step): max |Δ| \(difference)")
            }
        }
    }

    @Test("a step that cannot get cache blocks changes no sequence")
    func fullCacheLeavesSequencesUnchanged() throws {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 2)
        let engine = try DecodeEngine(model: model, cache: cache, threads: 1, maxBatch: 4, maxContext: 64)
        let a = cache.createSequence(), b = cache.createSequence(), c = cache.createSequence()
        try engine.step([DecodeInput(sequence: a, token: 1), DecodeInput(sequence: b, token: 1)])
        let error = #expect(throws: InferenceError.self) {
            try engine.step([DecodeInput(sequence: a, token: 2), DecodeInput(sequence: b, token: 2), DecodeInput(sequence: c, token: 2)])
        }
        #expect(error?.code == .kvCacheFull)
        #expect(try cache.tokenCount(a) == 1)
        #expect(try cache.tokenCount(b) == 1)
        #expect(try cache.tokenCount(c) == 0)
    }
}
