import ArgumentParser
import Foundation
import GGUF
import Inference

/// `baton bench model`: llama-bench style figures for the two execution paths.
struct BenchModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Prefill (pp512), decode (tg128) and batch-8 decode speed of a model, and memory of each path.",
        discussion: """
            The decode path runs first, so its resident memory is measured before the prefill path's f32 \
            weights exist; with --only each path runs alone in this process. With --json the last line of \
            standard output is one JSON object. The report names the kernels' instruction-set level (BATON_ISA \
            caps it: BATON_ISA=avx2 runs the AVX2 kernels on an AVX-512 machine) and OpenBLAS's CPU kernels \
            (OPENBLAS_CORETYPE=Haswell makes prefill's sgemm AVX2-only too).
            """
    )

    enum Path: String, ExpressibleByArgument, CaseIterable { case prefill, decode }

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(name: .long, help: "Prompt tokens for the prefill figure.")
    var promptTokens: Int = 512
    @Option(name: .long, help: "Generated tokens for the decode figures.")
    var decodeTokens: Int = 128
    @Option(
        name: .long,
        help: "Cached positions each decode sequence starts with (attention cost grows with them; their KV is whatever the cache holds).")
    var context: Int = 0
    @Option(name: .long, help: "Repetitions of each measurement; the best is reported.")
    var repetitions: Int = 2
    @Option(name: .long, help: "Run only one path (prefill or decode).")
    var only: Path?
    @Flag(name: .long, help: "Print one JSON object on the last line.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard promptTokens >= 1, decodeTokens >= 1, repetitions >= 1 else {
            throw ValidationError("--prompt-tokens, --decode-tokens and --repetitions must be at least 1")
        }
        guard context >= 0 else { throw ValidationError("--context must be at least 0") }
    }

    func run() throws {
        let path = try modelOptions.resolvedPath()
        let model = try TransformerModel(path: path)
        let c = model.configuration
        // Deterministic pseudo-random prompt ids (as llama-bench uses random tokens): no tokenizer effects.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let prompt: [Int32] = (0..<promptTokens).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32((state >> 33) % UInt64(c.vocabularySize))
        }
        let kernels = Kernels.selection
        var report: [(String, String)] = [
            ("model", "\"\(model.file.name)\""), ("threads", "\(threads)"), ("isa", "\"\(kernels.isa)\""),
            ("isa_forced", "\(kernels.forced)"), ("cpu_isa", "\"\(kernels.cpu)\""),
            ("blas_core", kernels.blasCore.map { "\"\($0)\"" } ?? "null"),
        ]
        var lines = ["kernels \(kernels)"]

        if only != .prefill {
            let positions = context + decodeTokens + 1
            let cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: 8 * ((positions + 15) / 16 + 1))
            let engine = try DecodeEngine(model: model, cache: cache, threads: threads, maxBatch: 8, maxContext: positions)
            func best(batch: Int) throws -> Double {
                try (0..<repetitions).map { _ in
                    try Self.decode(engine, cache: cache, batch: batch, steps: decodeTokens, context: context)
                }.max()!
            }
            let single = try best(batch: 1), batched = try best(batch: 8)
            let rss = Self.memory("VmRSS")
            report += [
                ("decode_tokens_per_second", Self.format(single)),
                ("decode_batch8_tokens_per_second", Self.format(batched)),
                ("decode_tokens", "\(decodeTokens)"), ("decode_context", "\(context)"), ("decode_rss_bytes", "\(rss)"),
            ]
            let after = context > 0 ? " after \(context) cached positions" : ""
            lines.append("decode  tg\(decodeTokens) batch 1\(after): \(Self.format(single)) tokens/s")
            lines.append("decode  tg\(decodeTokens) batch 8\(after): \(Self.format(batched)) tokens/s aggregate")
            lines.append("decode  resident memory: \(rss / 1_048_576) MiB")
            // Where batch 8 stands against the hardware: it is bound by the integer dot products, not by memory.
            if let peak = Kernels.int8DotPeak(threads: threads) {
                let perToken = Double(model.weights.multiplyAccumulatesPerToken)
                let used = batched * perToken, ceiling = peak / perToken
                report += [
                    ("int8_peak_macs_per_second", Self.format(peak)),
                    ("decode_batch8_weight_macs_per_second", Self.format(used)),
                    ("decode_ceiling_tokens_per_second", Self.format(ceiling)),
                ]
                lines.append(
                    "decode  \(kernels.isa) int8 dot-product peak: \(Self.format(peak / 1e9)) GMAC/s; batch 8 runs "
                        + "the weight products (\(Self.format(perToken / 1e6)) M MACs per token) at \(Self.format(used / 1e9)) GMAC/s "
                        + "(\(Self.format(100 * used / peak)) % of peak); at the peak any batch tops out at "
                        + "\(Self.format(ceiling)) tokens/s (\(Self.format(ceiling / single))× batch 1)")
            }
        }
        if only != .decode {
            let short = min(Self.shortPrompt, promptTokens)
            let cache = try PagedKVCache(
                layout: model.kvCacheLayout(), blockCount: max((promptTokens + 15) / 16, 8 * ((short + 15) / 16)) + 1)
            let loadStarted = ContinuousClock.now
            let engine = try PrefillEngine(model: model, cache: cache, threads: threads, maxContext: promptTokens)
            let load = Self.seconds(since: loadStarted)
            let speed = try (0..<repetitions).map { _ in
                let sequence = cache.createSequence()
                defer { cache.free(sequence) }
                let started = ContinuousClock.now
                _ = try engine.prefill(prompt, sequence: sequence)
                return Double(prompt.count) / Self.seconds(since: started)
            }.max()!
            // Eight short prompts, one pass each (as a prefill worker without batching runs them) and all in one
            // pass: short passes are dominated by reading the f32 weights, which batching shares.
            let prompts = (0..<8).map { i in Array(prompt[0..<short].map { ($0 + Int32(i)) % Int32(c.vocabularySize) }) }
            let sequential = try (0..<repetitions).map { _ in
                try Self.prefill(engine, cache: cache, prompts: prompts, batched: false)
            }.max()!
            let batched = try (0..<repetitions).map { _ in
                try Self.prefill(engine, cache: cache, prompts: prompts, batched: true)
            }.max()!
            let rss = Self.memory("VmRSS")
            report += [
                ("prefill_tokens_per_second", Self.format(speed)), ("prefill_tokens", "\(promptTokens)"),
                ("prefill_8x\(short)_one_pass_each_tokens_per_second", Self.format(sequential)),
                ("prefill_8x\(short)_batched_tokens_per_second", Self.format(batched)),
                ("prefill_rss_bytes", "\(rss)"), ("prefill_load_seconds", Self.format(load)),
            ]
            lines.append("prefill pp\(promptTokens): \(Self.format(speed)) tokens/s (weights dequantized in \(Self.format(load)) s)")
            lines.append(
                "prefill 8 × \(short)-token prompts: \(Self.format(sequential)) tokens/s one pass each, "
                    + "\(Self.format(batched)) tokens/s in one batched pass (\(Self.format(batched / sequential))×)")
            lines.append("prefill resident memory: \(rss / 1_048_576) MiB")
        }
        let peak = Self.memory("VmHWM")
        report.append(("peak_rss_bytes", "\(peak)"))
        lines.append("peak resident memory: \(peak / 1_048_576) MiB")
        if json {
            print("{" + report.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        } else {
            print("\(model.file.name), \(threads) threads")
            for line in lines { print(line) }
        }
    }

    /// Decodes `steps` tokens for `batch` fresh sequences (each started from a different token, greedy after) that
    /// already hold `context` cached positions; returns aggregate tokens per second.
    static func decode(_ engine: DecodeEngine, cache: PagedKVCache, batch: Int, steps: Int, context: Int) throws -> Double {
        let sequences = (0..<batch).map { _ in cache.createSequence() }
        defer { for sequence in sequences { cache.free(sequence) } }
        // The positions only need to exist for the timing: attention reads them whatever they hold.
        for sequence in sequences where context > 0 { _ = try cache.append(sequence, count: context) }
        var tokens = (0..<batch).map { Int32(1000 + 97 * $0) }
        var inputs = [DecodeInput](repeating: DecodeInput(sequence: sequences[0], token: 0), count: batch)
        let started = ContinuousClock.now
        for _ in 0..<steps {
            for b in 0..<batch { inputs[b] = DecodeInput(sequence: sequences[b], token: tokens[b]) }
            try engine.step(inputs)
            for b in 0..<batch { tokens[b] = engine.argmax(row: b) }
        }
        return Double(batch * steps) / seconds(since: started)
    }

    /// Tokens in each of the eight short prompts of the batched-prefill figure.
    static let shortPrompt = 32

    /// Prefills `prompts` into fresh sequences, one pass each or all in one pass; returns tokens per second.
    static func prefill(_ engine: PrefillEngine, cache: PagedKVCache, prompts: [[Int32]], batched: Bool) throws -> Double {
        let sequences = prompts.map { _ in cache.createSequence() }
        defer { for sequence in sequences { cache.free(sequence) } }
        let chunks = zip(sequences, prompts).map { PrefillChunk(sequence: $0, tokens: $1, completesPrompt: true) }
        let started = ContinuousClock.now
        if batched {
            _ = try engine.run(chunks)
        } else {
            for chunk in chunks { _ = try engine.run([chunk]) }
        }
        return Double(prompts.reduce(0) { $0 + $1.count }) / seconds(since: started)
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = start.duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }

    /// A `/proc/self/status` figure (`VmRSS`, `VmHWM`) in bytes; 0 where the file does not exist.
    static func memory(_ key: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(key + ":") {
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return kilobytes * 1024
        }
        return 0
    }
}
