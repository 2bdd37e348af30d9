import Testing

@testable import Inference

/// The disaggregation seam: prefill in one engine instance, export the sequence's KV layer by layer, import it
/// into another instance's cache, and decode there exactly as if it had never moved.
@Suite("KV hand-off between engine instances")
struct KVHandoffTests {
    @Test("a sequence exported after prefill continues identically in another engine")
    func exportImportContinuesIdentically() throws {
        let model = try EngineTestModel.model()
        let prompt = EngineTestModel.prompt
        let steps = 8

        // Prefill worker: sgemm path, its own cache.
        let prefillCache = try EngineTestModel.cache(model)
        let prefill = try PrefillEngine(model: model, cache: prefillCache, threads: 2, maxContext: 128)
        let source = prefillCache.createSequence()
        let firstLogits = try prefill.prefill(prompt, sequence: source)

        // Reference: decode continues in the prefill worker's own cache (never moved).
        let stay = try DecodeEngine(model: model, cache: prefillCache, threads: 2, maxBatch: 2, maxContext: 128)
        let stayed = prefillCache.createSequence()
        _ = try prefill.prefill(prompt, sequence: stayed)

        // Decode worker: another cache, filled from the export.
        let decodeCache = try EngineTestModel.cache(model)
        let moved = try decodeCache.importSequence(try prefillCache.descriptor(source))
        for layer in 0..<model.configuration.layerCount {
            let bytes = try prefillCache.exportLayer(source, layer: layer)
            try bytes.withUnsafeBytes { try decodeCache.importLayer(moved, layer: layer, bytes: $0) }
        }
        let decode = try DecodeEngine(model: model, cache: decodeCache, threads: 2, maxBatch: 2, maxContext: 128)

        var movedToken = argmax(firstLogits), stayedToken = movedToken
        var movedTokens: [Int32] = [], stayedTokens: [Int32] = []
        for _ in 0..<steps {
            movedTokens.append(movedToken)
            stayedTokens.append(stayedToken)
            try decode.step([DecodeInput(sequence: moved, token: movedToken)])
            try stay.step([DecodeInput(sequence: stayed, token: stayedToken)])
            let a = decode.logits(row: 0), b = stay.logits(row: 0)
            #expect(a == b, "logits differ by up to \(maxAbsDifference(a, b))")
            movedToken = argmax(a)
            stayedToken = argmax(b)
        }
        #expect(movedTokens == stayedTokens)
        #expect(try decodeCache.tokenCount(moved) == prompt.count + steps)
    }

    @Test("a cache of another model is refused on import")
    func foreignLayoutIsRefused() throws {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model)
        var foreign = model.kvCacheLayout()
        foreign.modelFingerprint = "llama-ffffffffffffffff"
        let error = #expect(throws: InferenceError.self) {
            _ = try cache.importSequence(KVSequenceDescriptor(layout: foreign, tokenCount: 3))
        }
        #expect(error?.code == .layoutMismatch)
    }
}
