import ArgumentParser
import Foundation
import GGUF
import Tokenization

/// `baton tokenize`: the token ids of a text, equal to llama.cpp's for the same model.
struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text (the same ids llama.cpp produces).",
        discussion: """
            The text is the arguments after `--`, joined by single spaces; without arguments it is read \
            from standard input. Example: baton tokenize --json -- "Hello, world!"
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Recognise special-token text such as <|im_start|> as that single token.")
    var parseSpecial = false

    @Flag(
        name: .long,
        inversion: .prefixedNo,
        help: "Add BOS/EOS when the model asks for them (SmolLM2 asks for neither)."
    )
    var addSpecial = true

    @Flag(name: .long, help: "Print only a JSON array of ids.")
    var json = false

    @Argument(help: "The text to tokenize (put it after `--`).")
    var text: [String] = []

    func run() async throws {
        let input: String
        if text.isEmpty {
            input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            input = text.joined(separator: " ")
        }
        let tokenizer = try Self.loadTokenizer(modelOptions, command: "tokenize")
        let ids = tokenizer.encode(input, addSpecial: addSpecial, parseSpecial: parseSpecial)
        if json {
            print("[" + ids.map(String.init).joined(separator: ",") + "]")
            return
        }
        for id in ids {
            print("\(id)\t\(Self.visible(tokenizer.piece(id, renderSpecial: true)))")
        }
    }

    /// A piece as a quoted string with newlines, tabs, quotes and other controls escaped; bytes that are
    /// not complete UTF-8 (a token ending inside a character) are listed in hex.
    static func visible(_ bytes: [UInt8]) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return "<" + bytes.map { "0x" + String($0, radix: 16, uppercase: true) }.joined(separator: " ") + ">"
        }
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            case _ where scalar.properties.generalCategory == .control:
                quoted += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }
}

/// `baton detokenize`: the text of token ids, as llama.cpp's detokenizer produces it.
struct DetokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detokenize",
        abstract: "Print the text of token ids.",
        discussion: """
            Ids are given after `--`, separated by spaces or commas; a JSON array from \
            `baton tokenize --json` works as is. The text is written exactly, without a trailing newline. \
            An id outside the vocabulary is an error.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Render control tokens such as <|im_end|> as their text instead of nothing.")
    var renderSpecial = false

    @Argument(help: "Token ids (put them after `--`).")
    var ids: [String] = []

    func run() async throws {
        let parsed = try Self.parseIDs(ids)
        let tokenizer = try TokenizeCommand.loadTokenizer(modelOptions, command: "detokenize")
        do {
            try tokenizer.validate(parsed)
        } catch {
            FileHandle.standardError.write(Data("baton detokenize: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        FileHandle.standardOutput.write(Data(tokenizer.decodeBytes(parsed, renderSpecial: renderSpecial)))
    }

    /// Token ids from arguments such as `1 2 3`, `1,2,3` or `[1, 2, 3]`.
    static func parseIDs(_ arguments: [String]) throws -> [Int32] {
        let separators = CharacterSet(charactersIn: "[], \t\n\r")
        var result: [Int32] = []
        for argument in arguments {
            for field in argument.components(separatedBy: separators) where !field.isEmpty {
                guard let id = Int32(field) else {
                    throw ValidationError("not a token id: '\(field)' (ids are integers 0..<vocabulary size)")
                }
                result.append(id)
            }
        }
        guard !result.isEmpty else {
            throw ValidationError("no token ids given; pass them after `--`, e.g. baton detokenize -- 19556 28 905")
        }
        return result
    }
}

extension TokenizeCommand {
    /// Opens the model and builds its tokenizer, or reports why not on standard error and fails.
    static func loadTokenizer(_ modelOptions: ModelOptions, command: String) throws -> Tokenizer {
        let path = try modelOptions.resolvedPath()
        do {
            return try Tokenizer(gguf: GGUFFile(path: path))
        } catch {
            FileHandle.standardError.write(Data("baton \(command): \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
