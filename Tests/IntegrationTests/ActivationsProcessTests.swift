import Foundation
import Testing

/// `baton activations` writes the JSON compare_activations.py reads, and refuses bad input clearly.
@Suite("baton activations")
struct ActivationsProcessTests {
    @Test("the file holds the tokens, the path and every tensor of the last token, named as llama.cpp names them")
    func jsonContract() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("activations-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: output) }
        for path in ["decode", "prefill"] {
            let result = try await BatonProcess.run(
                ["activations", "--tokens", "504,3575,282", "--path", path, "--output", output.path], timeout: .seconds(120))
            #expect(result.status == 0, "\(path): \(result.error)")
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: output)) as? [String: Any] ?? [:]
            #expect(object["tokens"] as? [Int] == [504, 3575, 282])
            #expect(object["path"] as? String == path)
            let tensors = object["tensors"] as? [String: [Double]] ?? [:]
            let expectedCount = 1 + 30 * 11 + 2
            #expect(tensors.count == expectedCount, "\(path): \(tensors.count) tensors")
            #expect(tensors["result_output"]?.count == 49_152)
            #expect(tensors["Kcur-29"]?.count == 192)
            #expect(tensors["ffn_swiglu-7"]?.count == 1536)
            #expect(tensors["l_out-29"]?.allSatisfy(\.isFinite) == true)
        }
    }

    @Test("bad input is refused with a message and a failing status")
    func refusals() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("activations-\(UUID()).json").path
        let both = try await BatonProcess.run(["activations", "--tokens", "1", "--prompt", "x", "--output", output])
        #expect(both.status != 0)
        #expect(both.error.contains("exactly one of --tokens and --prompt"))
        let outside = try await BatonProcess.run(["activations", "--tokens", "49152", "--output", output])
        #expect(outside.status != 0)
        #expect(outside.error.contains("49152"))
        #expect(!FileManager.default.fileExists(atPath: output))
    }
}
