import Foundation
import GGUF
import Testing
import Tokenization

/// Why a test could not set up what it needs (e.g. the default model is missing). Tests fail with it.
struct TestSetupError: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// The default model (SmolLM2-135M-Instruct), opened once for all tests.
enum DefaultModelFixture {
    private static let loaded: Result<GGUFFile, TestSetupError> = {
        let path = DefaultModel.path
        guard FileManager.default.fileExists(atPath: path) else {
            return .failure(TestSetupError(
                description: "default model not found at \(path); fetch it with `\(DefaultModel.fetchCommand)`"
            ))
        }
        do {
            return .success(try GGUFFile(path: path))
        } catch {
            return .failure(TestSetupError(description: "cannot open \(path): \(error)"))
        }
    }()

    private static let tokenizerResult: Result<Tokenizer, TestSetupError> = {
        switch loaded {
        case .failure(let error):
            return .failure(error)
        case .success(let file):
            do {
                return .success(try Tokenizer(gguf: file))
            } catch {
                return .failure(TestSetupError(description: "cannot build the tokenizer: \(error)"))
            }
        }
    }()

    static func file() throws -> GGUFFile { try loaded.get() }
    static func tokenizer() throws -> Tokenizer { try tokenizerResult.get() }
}

/// Reads a JSON fixture from the test bundle's Fixtures folder.
func loadFixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
        throw TestSetupError(description: "fixture \(name).json is missing from Tests/TokenizationTests/Fixtures")
    }
    return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
}

/// A tiny byte-level vocabulary for unit tests: the 256 GPT-2 byte characters (ids 0...255) followed by
/// `extra` tokens.
struct TinyVocabulary {
    var tokens: [String]
    var types: [Int32]

    init(extra: [(String, Int32)] = []) {
        tokens = (0..<256).map { String(Unicode.Scalar(Self.gpt2Scalar(forByte: $0))!) }
        types = [Int32](repeating: 1, count: 256)
        for (text, type) in extra {
            tokens.append(text)
            types.append(type)
        }
    }

    /// GPT-2's byte → character mapping, written out independently of the module under test.
    static func gpt2Scalar(forByte byte: Int) -> UInt32 {
        let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
        if printable { return UInt32(byte) }
        var shifted: UInt32 = 0
        for earlier in 0..<byte {
            let earlierPrintable = (0x21...0x7E).contains(earlier) || (0xA1...0xAC).contains(earlier)
                || (0xAE...0xFF).contains(earlier)
            if !earlierPrintable { shifted += 1 }
        }
        return 256 + shifted
    }

    func id(_ text: String) -> Int32 { Int32(tokens.firstIndex(of: text)!) }
}
