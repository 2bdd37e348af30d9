import ArgumentParser
import ChatTemplates
import Foundation
import GGUF
import Inference
import Tokenization

/// `baton chat`: an interactive conversation in the terminal, streaming each reply.
struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal (/exit or end of input to quit).",
        discussion: "Each line you type is a user message; the model's reply streams to standard output."
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var chatTemplate: ChatTemplateOptions
    @Option(name: .long, help: "An optional system message.")
    var system: String?
    @Option(name: .long, help: "Context size in tokens for the whole conversation.")
    var context: Int = 4096
    @OptionGroup var sampling: GenerateCommand.SamplingOptions

    func run() throws {
        let path = try modelOptions.resolvedPath()
        // The prefill path pays off for a growing conversation, so load it from the start.
        let (file, tokenizer) = try GenerateCommand.open(path)
        let local = try GenerateCommand.LocalModel(
            file: file, tokenizer: tokenizer, threads: sampling.threads, contextLength: context,
            promptTokens: GenerateCommand.LocalModel.prefillThreshold)
        let prompt = try ChatPrompt(
            file: local.model.file, tokenizer: local.tokenizer, templateFile: try chatTemplate.resolvedFile())
        var history: [ChatMessage] = system.map { [.system($0)] } ?? []
        let interactive = isatty(STDIN_FILENO) != 0
        while true {
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine(strippingNewline: true) else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" || text == "/quit" { break }
            history.append(.user(text))
            let tokens: [Int32]
            do { tokens = try prompt.tokens(history) } catch {
                GenerateCommand.log("error: \(error)")
                history.removeLast()
                continue
            }
            var parameters = sampling.parameters
            parameters.maxTokens = min(sampling.maxTokens, max(1, local.contextLength - tokens.count - 1))
            guard tokens.count < local.contextLength - 1 else {
                GenerateCommand.log("the conversation no longer fits in the context of \(local.contextLength) tokens; start a new chat")
                break
            }
            let result = try local.generator.generate(prompt: tokens, parameters: parameters) { piece in
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            history.append(.assistant(result.text))
        }
    }
}
