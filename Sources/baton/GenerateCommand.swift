import ArgumentParser
import ChatTemplates
import Foundation
import GGUF
import Inference
import Tokenization

extension GenerateCommand {
/// Sampling flags shared by `generate` and `chat` (defaults as llama.cpp's CLI).
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Most tokens to generate.")
    var maxTokens: Int = 256
    @Option(name: .long, help: "Sampling temperature; 0 picks the most likely token (greedy).")
    var temperature: Float = 0.8
    @Option(name: .long, help: "Seed for the sampler (same seed, same tokens). Random if omitted.")
    var seed: UInt64?
    @Option(name: .long, help: "Keep only the K most likely tokens (0 = off).")
    var topK: Int = 40
    @Option(name: .long, help: "Keep the smallest set of tokens whose probability reaches P (1 = off).")
    var topP: Float = 0.95
    @Option(name: .long, help: "Drop tokens less likely than P times the most likely one (0 = off).")
    var minP: Float = 0.05
    @Option(name: .long, help: "Penalty for tokens among the last 64 (1 = off).")
    var repeatPenalty: Float = 1.0
    @Option(name: .long, help: "Stop before this text (repeatable).")
    var stop: [String] = []
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    var parameters: SamplingParameters {
        SamplingParameters(
            temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty,
            seed: seed, maxTokens: maxTokens, stopStrings: stop)
    }

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        do { _ = try parameters.validated() } catch { throw ValidationError(error.message) }
    }
}

/// A loaded model with both engines on one cache: what a single-process `generate` or `chat` needs.
struct LocalModel {
    /// Prompts shorter than this are ingested by the decode path: dequantizing the weights for sgemm costs more
    /// than it saves.
    static let prefillThreshold = 48

    let model: TransformerModel
    let tokenizer: Tokenizer
    let generator: Generator
    let contextLength: Int

    init(file: GGUFFile, tokenizer: Tokenizer, threads: Int, contextLength: Int, promptTokens: Int) throws {
        let started = ContinuousClock.now
        model = try TransformerModel(file: file)
        self.tokenizer = tokenizer
        self.contextLength = min(contextLength, model.configuration.contextLength)
        let layout = model.kvCacheLayout()
        let cache = try PagedKVCache(
            layout: layout, blockCount: (self.contextLength + layout.blockSize - 1) / layout.blockSize + 1)
        let decode = try DecodeEngine(model: model, cache: cache, threads: threads, maxBatch: 1, maxContext: self.contextLength)
        var prefill: PrefillEngine?
        if promptTokens >= Self.prefillThreshold {
            prefill = try PrefillEngine(model: model, cache: cache, threads: threads, maxContext: self.contextLength)
        }
        generator = try Generator(tokenizer: tokenizer, prefill: prefill, decode: decode)
        let elapsed = started.duration(to: .now).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        GenerateCommand.log(
            "loaded \(file.name) in " + String(format: "%.2f s", seconds)
                + " (\(threads) threads, context \(self.contextLength), prefill path \(prefill == nil ? "off" : "on"))")
    }
}

/// Writes a line to standard error (standard output carries only generated text).
static func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Opens the model file and its tokenizer.
static func open(_ path: String) throws -> (GGUFFile, Tokenizer) {
    do {
        let file = try GGUFFile(path: path)
        return (file, try Tokenizer(gguf: file))
    } catch {
        throw ValidationError("cannot load \(path): \(error)")
    }
}
}

/// `baton generate`: one completion, printed as it is generated; nothing but the text goes to stdout.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate a completion of a prompt (raw) or a reply to chat messages (with the model's template).",
        discussion: """
            Examples:
              baton generate --prompt "The capital of France is" --max-tokens 16 --temperature 0
              baton generate --messages '[{"role":"user","content":"Hi!"}]'
            Only the generated text is written to standard output; statistics go to standard error.
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var chatTemplate: ChatTemplateOptions
    @Option(name: .long, help: "Raw prompt: completed as is, no chat template.")
    var prompt: String?
    @Option(name: .long, help: "Chat messages as OpenAI-style JSON: [{\"role\":\"user\",\"content\":\"...\"}].")
    var messages: String?
    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        guard (prompt == nil) != (messages == nil) else {
            throw ValidationError("give exactly one of --prompt or --messages")
        }
    }

    func run() throws {
        let path = try modelOptions.resolvedPath()
        // Tokenize first (cheap) so the engines are sized for the prompt.
        let (file, tokenizer) = try Self.open(path)
        let promptTokens: [Int32]
        if let prompt {
            promptTokens = tokenizer.encode(prompt, addSpecial: true, parseSpecial: false)
        } else {
            let decoded: [ChatMessage]
            do { decoded = try JSONDecoder().decode([ChatMessage].self, from: Data(messages!.utf8)) } catch {
                throw ValidationError("--messages is not a JSON array of {\"role\", \"content\"} objects: \(error)")
            }
            promptTokens = try ChatPrompt(file: file, tokenizer: tokenizer, templateFile: try chatTemplate.resolvedFile())
                .tokens(decoded)
        }
        guard !promptTokens.isEmpty else { throw ValidationError("the prompt is empty") }
        let local = try LocalModel(
            file: file, tokenizer: tokenizer, threads: sampling.threads, contextLength: promptTokens.count + sampling.maxTokens,
            promptTokens: promptTokens.count)
        let started = ContinuousClock.now
        let result = try local.generator.generate(prompt: promptTokens, parameters: sampling.parameters) { text in
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        // A terminal gets a final newline; a pipe gets exactly the generated text.
        if isatty(STDOUT_FILENO) != 0 { FileHandle.standardOutput.write(Data("\n".utf8)) }
        let elapsed = started.duration(to: .now).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        Self.log(
            "prompt \(result.usage.promptTokens) tokens, generated \(result.usage.completionTokens) tokens in "
                + String(format: "%.2f s", seconds) + ", finish reason \(result.finishReason.openAIName), seed \(result.seed)")
    }
}
