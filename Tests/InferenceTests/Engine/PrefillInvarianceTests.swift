import GGUF
import Testing

@testable import Inference

/// A prompt's K/V and logits are the same bits however prefill runs it: in one pass, in passes cut anywhere,
/// packed with other prompts before and after it, on one thread or two. (What the prefix cache and a batched
/// prefill worker rely on; run it with `BATON_ISA=avx2 OPENBLAS_CORETYPE=Haswell` and `scalar` too.)
@Suite("Prefill is invariant to passes, packing and threads", .serialized)
struct PrefillInvarianceTests {
    /// The default model, and a random Gemma 3 whose sliding window (16 positions) the cuts cross.
    static let models = ["default", "gemma3-random.gguf"]

    /// 150 tokens: more than two attention tiles, no multiple of a row unit or a KV block.
    static func prompt(_ model: TransformerModel) -> [Int32] {
        let vocabulary = model.configuration.vocabularySize
        return (0..<150).map { Int32(($0 * 7_919 + 11) % (vocabulary - 1) + 1) }
    }

    /// One model's engines share its f32 weights.
    final class Subject {
        let model: TransformerModel
        let weights: PrefillWeights

        init(_ name: String) throws {
            model = name == "default" ? try EngineTestModel.model() : try TransformerModel(path: try DefaultModel.testModel(name))
            weights = PrefillWeights(model: model, threads: 2)
        }

        func engine(threads: Int, chunkSize: Int = 512) throws -> PrefillEngine {
            let cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: 96)
            return try PrefillEngine(
                model: model, cache: cache, threads: threads, chunkSize: chunkSize, maxContext: 256, weights: weights)
        }
    }

    /// A prompt's result: its logits and, per layer, the K and V bytes of its positions.
    struct Outcome: Equatable {
        var logits: [Float]
        var kv: [[UInt8]]

        static func == (a: Outcome, b: Outcome) -> Bool {
            a.kv == b.kv && a.logits.map(\.bitPattern) == b.logits.map(\.bitPattern)
        }
    }

    static func result(_ engine: PrefillEngine, _ sequence: SequenceID, logits: [Float]) throws -> Outcome {
        let cache = engine.cache, layout = cache.layout
        let count = try cache.tokenCount(sequence)
        let width = layout.dataType.byteWidth, rowBytes = layout.headDim * width
        var kv: [[UInt8]] = []
        for layer in 0..<layout.layers {
            let bytes = try cache.exportLayer(sequence, layer: layer)
            var used: [UInt8] = []
            // A block slice is K[kvHead][slot][headDim] then V likewise; slots past the end hold nothing.
            for block in 0..<(count + layout.blockSize - 1) / layout.blockSize {
                let slots = min(layout.blockSize, count - block * layout.blockSize)
                let slice = block * layout.layerBlockBytes
                for part in 0..<2 {
                    for head in 0..<layout.kvHeads {
                        let start = slice + ((part * layout.kvHeads + head) * layout.blockSize) * rowBytes
                        used += bytes[start..<start + slots * rowBytes]
                    }
                }
            }
            kv.append(used)
        }
        return Outcome(logits: logits, kv: kv)
    }

    static func reference(_ subject: Subject) throws -> Outcome {
        let engine = try subject.engine(threads: 1)
        let sequence = engine.cache.createSequence()
        let prompt = Self.prompt(subject.model)
        return try result(engine, sequence, logits: try engine.prefill(prompt, sequence: sequence))
    }

    @Test("cut into passes at any positions, on 1 or 2 threads", arguments: models, [1, 2])
    func cuts(_ name: String, threads: Int) throws {
        let subject = try Subject(name)
        let reference = try Self.reference(subject)
        let prompt = Self.prompt(subject.model)
        for cuts in [[], [1], [37, 101], [5, 6, 7, 64, 65, 149]] {
            let engine = try subject.engine(threads: threads)
            let sequence = engine.cache.createSequence()
            var logits: [[Float]] = []
            for (start, end) in zip([0] + cuts, cuts + [prompt.count]) {
                logits = try engine.run([
                    PrefillChunk(sequence: sequence, tokens: Array(prompt[start..<end]), completesPrompt: end == prompt.count)
                ])
            }
            #expect(try Self.result(engine, sequence, logits: logits[0]) == reference, "\(name), cut at \(cuts)")
        }
        // The engine's own chunking, at 40 tokens.
        let chunked = try subject.engine(threads: threads, chunkSize: 40)
        let sequence = chunked.cache.createSequence()
        let logits = try chunked.prefill(prompt, sequence: sequence)
        #expect(try Self.result(chunked, sequence, logits: logits) == reference, "\(name), chunks of 40")
    }

    @Test("packed in one pass with other prompts before and after it, on 1 or 2 threads", arguments: models, [1, 2])
    func packing(_ name: String, threads: Int) throws {
        let subject = try Subject(name)
        let reference = try Self.reference(subject)
        let prompt = Self.prompt(subject.model)
        let others = prompt.reversed().map { $0 }
        let engine = try subject.engine(threads: threads, chunkSize: 256)
        let cache = engine.cache
        // Whole: a fresh prompt before, a continued one after.
        let target = cache.createSequence(), before = cache.createSequence(), after = cache.createSequence()
        _ = try engine.prefill(Array(others[..<20]), sequence: after)
        let whole = try engine.run([
            PrefillChunk(sequence: before, tokens: Array(others[..<45]), completesPrompt: true),
            PrefillChunk(sequence: target, tokens: prompt, completesPrompt: true),
            PrefillChunk(sequence: after, tokens: Array(others[20..<53]), completesPrompt: false),
        ])
        #expect(try Self.result(engine, target, logits: whole[1]) == reference, "\(name), packed whole")
        // Cut at 70, the rest packed between one-token prompts.
        let split = cache.createSequence()
        _ = try engine.run([PrefillChunk(sequence: split, tokens: Array(prompt[..<70]), completesPrompt: false)])
        let rest = try engine.run([
            PrefillChunk(sequence: cache.createSequence(), tokens: [others[0]], completesPrompt: true),
            PrefillChunk(sequence: cache.createSequence(), tokens: [others[1]], completesPrompt: true),
            PrefillChunk(sequence: split, tokens: Array(prompt[70...]), completesPrompt: true),
            PrefillChunk(sequence: cache.createSequence(), tokens: Array(others[2..<5]), completesPrompt: true),
        ])
        #expect(try Self.result(engine, split, logits: rest[2]) == reference, "\(name), packed after a cut")
    }

    @Test("chunks whose padding overflows one pass run in several with the same bits", arguments: [1, 2])
    func overflowingPadding(threads: Int) throws {
        let subject = try Subject("default")
        let reference = try Self.reference(subject)
        let prompt = Self.prompt(subject.model)
        // Each one-token prompt takes a whole row unit; beside them a 40-token piece no longer fits 64 rows.
        let engine = try subject.engine(threads: threads, chunkSize: 64)
        let cache = engine.cache
        let target = cache.createSequence()
        var logits: [[Float]] = []
        var reported: [Int] = []
        var passes = 0
        engine.activationObserver = { if $0.name == "inp_embd" { passes += 1 } }
        for start in stride(from: 0, to: prompt.count, by: 40) {
            let end = min(start + 40, prompt.count)
            let singles = (0..<6).map { i in
                PrefillChunk(sequence: cache.createSequence(), tokens: [prompt[i]], completesPrompt: false)
            }
            let chunks = singles + [PrefillChunk(
                sequence: target, tokens: Array(prompt[start..<end]), completesPrompt: end == prompt.count)]
            reported = []
            passes = 0
            logits = try engine.run(chunks) { chunk, layer in
                #expect(chunk == chunks.count - 1)
                reported.append(layer)
            }
        }
        #expect(reported == Array(0..<subject.model.configuration.layerCount), "each layer reported once, in order")
        #expect(try Self.result(engine, target, logits: logits[0]) == reference)
        // Units of 8 rows or more put the six one-token prompts in 48 rows or more of the 64 + padding.
        if engine.rowUnit >= 8 { #expect(passes == 2, "unit \(engine.rowUnit)") }
    }
}
