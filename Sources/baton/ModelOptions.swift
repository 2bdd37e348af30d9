import ArgumentParser
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
