import Foundation

/// Where Baton looks for models when no `--model` is given.
///
/// The default model is fetched by `bash Deploy/setup.sh` into `~/.cache/baton/models`
/// (or `$BATON_MODEL_DIR`). Every command that needs a model resolves its path through here,
/// so the "where is it and how do I get it" message is written once.
public enum DefaultModel {
    /// File name of the default model inside the model directory.
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The model directory: `$BATON_MODEL_DIR` if set, else `~/.cache/baton/models`.
    public static var directory: String {
        if let dir = ProcessInfo.processInfo.environment["BATON_MODEL_DIR"], !dir.isEmpty {
            return dir
        }
        return FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".cache/baton/models").path
    }

    /// Full path of the default model.
    public static var path: String { directory + "/" + fileName }

    /// The command that fetches the default model.
    public static let fetchCommand = "bash Deploy/setup.sh"

    /// Where the models only the test suite runs live: `<directory>/test`.
    public static var testDirectory: String { directory + "/test" }

    /// The command that fetches and writes the test models (Gemma 3 270M, the random-weight models).
    public static let testModelsFetchCommand = "bash Deploy/setup.sh --test-models"

    /// Full path of test model `name` (e.g. `gemma-3-270m-q4_k_m.gguf`); throws, naming the command that makes
    /// it, when it is missing.
    public static func testModel(_ name: String) throws(GGUFError) -> String {
        let path = testDirectory + "/" + name
        guard FileManager.default.fileExists(atPath: path) else {
            throw GGUFError(.fileNotFound, "test model not found at \(path); make it with `\(testModelsFetchCommand)`")
        }
        return path
    }

    /// Returns `explicit` if given, else the default model's path; throws if that file does not exist.
    public static func resolve(_ explicit: String?) throws(GGUFError) -> String {
        let candidate = explicit ?? path
        guard FileManager.default.fileExists(atPath: candidate) else {
            if explicit != nil {
                throw GGUFError(.fileNotFound, "model file not found: \(candidate)")
            }
            throw GGUFError(
                .fileNotFound,
                "default model not found at \(candidate); fetch it with `\(fetchCommand)` "
                    + "(run from the Baton checkout) or pass --model PATH"
            )
        }
        return candidate
    }
}
