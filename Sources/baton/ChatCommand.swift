import ArgumentParser
import ChatTemplates
import Foundation
import GGUF
import Inference
import Tokenization

/// `baton chat`: an interactive conversation in the terminal, streaming each reply.
struct ChatCommand: AsyncParsableCommand {
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

    func run() async throws {
        let path = try modelOptions.resolvedPath()
        let (file, tokenizer) = try GenerateCommand.open(path)
        let prompt = try ChatPrompt(file: file, tokenizer: tokenizer, templateFile: try chatTemplate.resolvedFile())
        let local = try GenerateCommand.LocalModel(
            file: file, tokenizer: tokenizer, threads: sampling.threads, contextLength: context)
        defer { local.scheduler.shutdown() }
        let contextLength = local.scheduler.contextLength
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
            guard tokens.count < contextLength - 1 else {
                GenerateCommand.log("the conversation no longer fits in the context of \(contextLength) tokens; start a new chat")
                break
            }
            let (reply, _) = try await local.complete(
                prompt: tokens, maxTokens: min(sampling.maxTokens, contextLength - tokens.count),
                sampling: sampling.parameters(), stop: sampling.stop
            ) { piece in
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            history.append(.assistant(reply))
        }
    }
}
