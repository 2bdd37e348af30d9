import Foundation
import Inference
import Worker

/// `baton simulate --calibrate`: times prefill passes and decode steps of a model on this box with the engines the
/// workers run, measures the box's device profile as a worker would, and fits a ``CostModel`` to the timings.
public enum CostCalibration {
    public struct Settings: Sendable {
        public var threads: Int
        /// Timed runs of each case; the median counts: on a shared box that is the speed a serving run sees, where
        /// the fastest run would be the speed of a quiet moment.
        public var repetitions: Int
        /// Single prompts of these lengths, one pass each.
        public var prefillPrompts: [Int] = [16, 64, 128, 256, 512]
        /// Passes of several short prompts batched together: (prompts, tokens each).
        public var prefillBatches: [(count: Int, tokens: Int)] = [(4, 32), (8, 32), (4, 100)]
        public var decodeBatches: [Int] = [1, 2, 4, 8]
        /// Cached positions per sequence before the timed steps.
        public var decodeContexts: [Int] = [0, 256, 1024]
        public var decodeSteps = 16

        public init(threads: Int, repetitions: Int = 3) {
            self.threads = threads
            self.repetitions = repetitions
        }
    }

    static func median(_ values: [Double]) -> Double {
        Percentiles.percentile(values.sorted(), 0.5)
    }

    /// Measures and fits. `progress` gets one line per case.
    public static func measure(modelPath: String, settings: Settings, progress: (String) -> Void) throws -> CostModel {
        let model = try TransformerModel(path: modelPath)
        let layout = model.kvCacheLayout()
        let gflops = DeviceProfiler.sgemmGFLOPS(threads: settings.threads)
        let bandwidth = DeviceProfiler.memoryReadGBps(threads: settings.threads)
        progress("device: sgemm \(String(format: "%.1f", gflops)) GFLOP/s, memory read \(String(format: "%.1f", bandwidth)) GB/s "
            + "(\(settings.threads) thread\(settings.threads == 1 ? "" : "s"))")
        let vocabulary = Int32(model.configuration.vocabularySize)
        func tokens(_ count: Int, variant: Int) -> [Int32] {
            (0..<count).map { Int32((1000 + 7919 * ($0 + 1) + 104_729 * variant) % Int(vocabulary)) }
        }

        // Prefill: one pass per case, fresh sequences every time.
        let longest = settings.prefillPrompts.max() ?? 512
        let cacheTokens = max(longest, settings.prefillBatches.map { $0.count * $0.tokens }.max() ?? 0)
        let prefillCache = try PagedKVCache(layout: layout, blockCount: layout.blocks(forTokens: cacheTokens) + 16)
        let prefill = try PrefillEngine(model: model, cache: prefillCache, threads: settings.threads, maxContext: longest)
        var cases: [[Int]] = settings.prefillPrompts.map { [$0] }
        cases += settings.prefillBatches.map { Array(repeating: $0.tokens, count: $0.count) }
        var prefillSamples: [CostModel.Sample] = []
        for prompts in cases {
            var times: [Double] = []
            for _ in 0..<max(1, settings.repetitions) {
                let sequences = prompts.map { _ in prefillCache.createSequence() }
                defer { for s in sequences { prefillCache.free(s) } }
                let chunks = prompts.enumerated().map { i, n in
                    PrefillChunk(sequence: sequences[i], tokens: tokens(n, variant: i), completesPrompt: true)
                }
                let started = ContinuousClock.now
                _ = try prefill.run(chunks)
                times.append(started.duration(to: .now) / .seconds(1))
            }
            let best = median(times)
            prefillSamples.append(CostModel.Sample(kind: "prefill", prompts: prompts, seconds: best))
            progress("prefill pass \(prompts.count == 1 ? "\(prompts[0])" : "\(prompts.count)×\(prompts[0])") tokens: "
                + String(format: "%.1f ms", best * 1000))
        }

        // Decode: steps of `batch` sequences that already hold `context` positions each.
        let maxBatch = settings.decodeBatches.max() ?? 8
        let maxContext = (settings.decodeContexts.max() ?? 0) + settings.decodeSteps + 1
        let decodeCache = try PagedKVCache(layout: layout, blockCount: maxBatch * (layout.blocks(forTokens: maxContext) + 1))
        let decode = try DecodeEngine(model: model, cache: decodeCache, threads: settings.threads, maxBatch: maxBatch,
                                      maxContext: maxContext)
        var decodeSamples: [CostModel.Sample] = []
        for context in settings.decodeContexts {
            for batch in settings.decodeBatches {
                var times: [Double] = []
                for _ in 0..<max(1, settings.repetitions) {
                    let sequences = (0..<batch).map { _ in decodeCache.createSequence() }
                    defer { for s in sequences { decodeCache.free(s) } }
                    for s in sequences where context > 0 { _ = try decodeCache.append(s, count: context) }
                    var next = (0..<batch).map { Int32(1000 + 97 * $0) }
                    let started = ContinuousClock.now
                    for _ in 0..<settings.decodeSteps {
                        try decode.step((0..<batch).map { DecodeInput(sequence: sequences[$0], token: next[$0]) })
                        for b in 0..<batch { next[b] = decode.argmax(row: b) }
                    }
                    times.append(started.duration(to: .now) / .seconds(1) / Double(settings.decodeSteps))
                }
                let best = median(times)
                // The context grows during the timed steps: the middle one stands for them all.
                let held = batch * (context + settings.decodeSteps / 2)
                decodeSamples.append(CostModel.Sample(kind: "decode", batch: batch, context: held, seconds: best))
                progress("decode step batch \(batch), \(context) cached each: " + String(format: "%.2f ms", best * 1000))
            }
        }

        let kvBytes = Double(layout.layers * layout.layerBlockBytes) / Double(layout.blockSize)
        return try CostModel.fit(
            model: (model.file.name as NSString).lastPathComponent,
            reference: .init(sgemmGFLOPS: gflops, memoryReadGBps: bandwidth, threads: settings.threads),
            flopsPerToken: 2 * Double(model.weights.multiplyAccumulatesPerToken), kvBytesPerToken: kvBytes,
            kvBlockTokens: layout.blockSize, prefillChunkTokens: prefill.chunkSize, prefillSamples: prefillSamples,
            decodeSamples: decodeSamples)
    }
}
