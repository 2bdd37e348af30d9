import ArgumentParser
import Foundation
import GGUF

/// `--model PATH`, shared by every command that needs a model. Without it the default model is used.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Path to a GGUF model (default: the SmolLM2-135M-Instruct Q4_1 fetched by Deploy/setup.sh).")
    var model: String?

    /// The model path to open, or an error that says exactly how to get the default model.
    func resolvedPath() throws -> String {
        do {
            return try DefaultModel.resolve(model)
        } catch {
            throw CommandFailure(error.message)
        }
    }
}

/// A failure that is not a misuse of the command line: printed as "Error: …" without the usage text.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ message: String) {
        description = message
    }
}

/// `--chat-template FILE`: a Jinja chat template used instead of the model's own, or for a model without one
/// (a base model, whose chat requests are refused otherwise).
struct ChatTemplateOptions: ParsableArguments {
    @Option(
        name: .customLong("chat-template"),
        help: "Jinja chat template file to use instead of the model's tokenizer.chat_template (needed for chat with a base model that has none).")
    var file: String?

    /// The file as an absolute path (for a child process with another working directory), checked to exist.
    func resolvedFile() throws -> String? {
        guard let file else { return nil }
        let path = URL(fileURLWithPath: file).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("--chat-template \(file) does not exist")
        }
        return path
    }
}
