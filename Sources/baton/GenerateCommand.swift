import ArgumentParser
import ChatTemplates
import Foundation
import GGUF
import Generation
import Inference
import Tokenization

extension GenerateCommand {
    /// Sampling flags shared by `generate`, `chat` and `kv-handoff prefill` (defaults as llama.cpp's CLI).
    struct SamplingOptions: ParsableArguments {
        @Option(name: .long, help: "Most tokens to generate.")
        var maxTokens: Int = 256
        @Option(name: .long, help: "Sampling temperature; 0 picks the most likely token (greedy).")
        var temperature: Float = 0.8
        @Option(name: .long, help: "Seed for the sampler (same seed, same tokens). Random if omitted (and printed).")
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

        /// The parameters with a seed: the one given, or one drawn now.
        func parameters() -> SamplingParameters {
            var system = SystemRandomNumberGenerator()
            return SamplingParameters(
                temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty,
                seed: seed ?? system.next())
        }

        func validate() throws {
            guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            guard !stop.contains(where: \.isEmpty) else { throw ValidationError("--stop must not be empty") }
            do { _ = try parameters().validated() } catch { throw ValidationError(error.message) }
        }
    }

    /// A model served in this process by the one token loop (`DecodeScheduler`, prompts on the prefill path), as
    /// `baton serve` serves it: what `generate` and `chat` run, so they give the API's tokens.
    struct LocalModel {
        let tokenizer: Tokenizer
        let scheduler: DecodeScheduler

        init(file: GGUFFile, tokenizer: Tokenizer, threads: Int, contextLength: Int) throws {
            let started = ContinuousClock.now
            let model = try TransformerModel(file: file)
            self.tokenizer = tokenizer
            let context = min(contextLength, model.configuration.contextLength)
            scheduler = try DecodeScheduler(
                model: model, tokenizer: tokenizer,
                configuration: DecodeScheduler.Configuration(
                    kvBlocks: model.kvCacheLayout().blocks(forTokens: context), maxBatch: 1, threads: threads,
                    maxContext: context))
            scheduler.start()
            GenerateCommand.log(
                "loaded \(file.name) in " + String(format: "%.2f s", (started.duration(to: .now) / .seconds(1)))
                    + " (\(threads) threads, context \(scheduler.contextLength))")
        }

        /// Generates a completion of `prompt`, writing its text as it becomes final (stop strings cut it);
        /// returns the whole text and the end.
        func complete(
            prompt: [Int32], maxTokens: Int, sampling: SamplingParameters, stop: [String], write: (String) -> Void
        ) async throws -> (text: String, summary: GenerationSummary) {
            let state: GenerationState
            do {
                state = GenerationState(
                    request: try GenerationRequest(
                        id: "cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", prompt: prompt, maxNewTokens: maxTokens,
                        sampling: sampling
                    ).validated(vocabularySize: tokenizer.vocabularySize, contextLength: scheduler.contextLength))
            } catch {
                throw ValidationError(error.message)
            }
            let stream = try await scheduler.generate(state)
            var text = CompletionText(tokenizer: tokenizer, stopStrings: stop)
            var whole = ""
            var received = 0
            for try await event in stream {
                switch event {
                case .token(let token):
                    received += 1
                    let piece = text.append(token.id)
                    whole += piece
                    write(piece)
                    if text.stopped {
                        stream.cancel(reason: "a stop string matched")
                        return (whole, GenerationSummary(
                            reason: .stopString, promptTokens: prompt.count, completionTokens: received))
                    }
                case .finished(var summary):
                    let piece = text.finish()
                    whole += piece
                    write(piece)
                    if text.stopped { summary.reason = .stopString }
                    return (whole, summary)
                }
            }
            throw ValidationError("the generation ended without finishing")
        }
    }

    /// Writes a line to standard error (standard output carries only generated text).
    static func log(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Opens the model file and its tokenizer; a file that is not a usable model is reported as such.
    static func open(_ path: String) throws -> (GGUFFile, Tokenizer) {
        do {
            let file = try GGUFFile(path: path)
            return (file, try Tokenizer(gguf: file))
        } catch {
            throw CommandFailure("cannot load \(path): \(error)")
        }
    }
}

/// `baton generate`: one completion, printed as it is generated; nothing but the text goes to stdout.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate a completion of a prompt (raw) or a reply to chat messages (with the model's template).",
        discussion: """
            Examples:
              baton generate --prompt "The capital of France is" --max-tokens 16 --temperature 0
              baton generate --messages '[{"role":"user","content":"Hi!"}]'
            Only the generated text is written to standard output; statistics go to standard error. The tokens
            are the ones `baton serve` and `baton up` give for the same request and seed.
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

    func run() async throws {
        let path = try modelOptions.resolvedPath()
        let (file, tokenizer) = try Self.open(path)
        let promptTokens: [Int32]
        if let prompt {
            promptTokens = tokenizer.encodePrompt(prompt)
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
            file: file, tokenizer: tokenizer, threads: sampling.threads, contextLength: promptTokens.count + sampling.maxTokens)
        defer { local.scheduler.shutdown() }
        let parameters = sampling.parameters()
        let started = ContinuousClock.now
        let (_, summary) = try await local.complete(
            prompt: promptTokens, maxTokens: sampling.maxTokens, sampling: parameters, stop: sampling.stop
        ) { text in
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        // A terminal gets a final newline; a pipe gets exactly the generated text.
        if isatty(STDOUT_FILENO) != 0 { FileHandle.standardOutput.write(Data("\n".utf8)) }
        Self.log(
            "prompt \(summary.promptTokens) tokens, generated \(summary.completionTokens) tokens in "
                + String(format: "%.2f s", (started.duration(to: .now) / .seconds(1)))
                + ", finish reason \(summary.reason.openAIValue), seed \(parameters.seed ?? 0)")
    }
}
