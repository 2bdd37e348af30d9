import ArgumentParser
import Benchmarks

/// The serving workload's options, shared by `bench serve` (run against a server) and `simulate` (run through the
/// simulator): a preset, its shape overridden, or a trace.
struct WorkloadOptions: ParsableArguments {
    @Option(help: "Named workload: \(ServeWorkload.Preset.all.map(\.name).joined(separator: ", ")).")
    var preset: String?

    @Option(help: "JSONL trace to replay (see bench serve's discussion for its fields).")
    var trace: String?

    @Option(name: .customLong("trace-speed"), help: "Replay the trace this many times faster (its timestamps divided by it).")
    var traceSpeed: Double = 1

    @Option(name: .customLong("prompt-words"), help: "Prompt length in words (about as many tokens); overrides the preset's. Default 64.")
    var promptWords: Int?

    @Option(name: .customLong("max-tokens"), help: "max_tokens of each request; overrides the preset's. Default 32.")
    var maxTokens: Int?

    func validate() throws {
        _ = try presetShape()
        guard (maxTokens ?? 1) >= 1, (promptWords ?? 1) >= 1, traceSpeed > 0, traceSpeed.isFinite else {
            throw ValidationError("--max-tokens, --prompt-words and --trace-speed must be positive")
        }
    }

    /// The synthetic requests' shape; nil with a trace (its lines give each request's).
    func presetShape() throws -> ServeWorkload.Preset? {
        if trace != nil {
            guard preset == nil, promptWords == nil, maxTokens == nil else {
                throw ValidationError("--trace sets every request's shape: drop --preset, --prompt-words and --max-tokens")
            }
            return nil
        }
        var shape = ServeWorkload.Preset(name: "custom", promptWords: 64, maxTokens: 32)
        if let preset {
            do { shape = try ServeWorkload.Preset.named(preset) } catch { throw ValidationError(error.message) }
        }
        if let promptWords { shape.promptWords = promptWords }
        if let maxTokens { shape.maxTokens = maxTokens }
        if (promptWords != nil || maxTokens != nil) && preset != nil { shape.name += " (modified)" }
        return shape
    }

    /// The trace's requests at its own timestamps, or `requests` of the preset's shape.
    func workload(requests: Int) throws -> ServeWorkload {
        if let trace {
            do { return try ServeWorkload.trace(file: trace) } catch { throw CommandFailure(error.description) }
        }
        return ServeWorkload.synthetic(try presetShape()!, count: requests)
    }
}
