import Foundation
import Testing

/// `baton` on llama.cpp's requantized copies of the default model (`bash Deploy/setup.sh --test-models`), and on
/// a file with a tensor type Baton has no kernels for.
@Suite("Tensor types through the baton executable")
struct TensorTypeProcessTests {
    static var modelDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["BATON_MODEL_DIR"], !dir.isEmpty { return dir }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/baton/models").path
    }

    static func testModel(_ kind: String) throws -> String {
        let path = modelDirectory + "/test/SmolLM2-135M-Instruct.requant-\(kind).gguf"
        guard FileManager.default.fileExists(atPath: path) else {
            throw ProcessFailure("test model \(path) is missing: make it with `bash Deploy/setup.sh --test-models`")
        }
        return path
    }

    /// A copy of the Q2_K test model with blk.0.attn_q.weight's type changed from Q4_0 to IQ4_NL (same block size,
    /// 18 bytes per 32), written to a temporary file: a valid GGUF whose one tensor Baton has no kernels for.
    static func fileWithIQ4NL() throws -> URL {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try testModel("Q2_K"))))
        // Tensor info: u64 name length, name, u32 n_dims (2), u64 dims[2], u32 type, u64 offset.
        let name = Array("blk.0.attn_q.weight".utf8)
        let header = bytes.prefix(min(bytes.count, 8 << 20))
        guard let at = (0..<(header.count - name.count)).first(where: { i in
            bytes[i..<(i + name.count)].elementsEqual(name) && bytes[i + name.count] == 2  // followed by n_dims = 2
        }) else { throw ProcessFailure("no tensor info for blk.0.attn_q.weight in the Q2_K test model") }
        let typeOffset = at + name.count + 4 + 16
        guard bytes[typeOffset] == 2 else { throw ProcessFailure("blk.0.attn_q.weight is not Q4_0 in the Q2_K test model") }
        bytes[typeOffset] = 20  // IQ4_NL
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("baton-iq4nl-\(UUID().uuidString).gguf")
        try Data(bytes).write(to: url)
        return url
    }

    @Test("inspect names a tensor type without kernels and says which commands cannot use the file; generate refuses it by tensor")
    func unsupportedType() async throws {
        let url = try Self.fileWithIQ4NL()
        defer { try? FileManager.default.removeItem(at: url) }
        let inspect = try await BatonProcess.run(["inspect", "--model", url.path])
        #expect(inspect.status == 0, "inspect failed: \(inspect.error)")
        #expect(inspect.output.contains("IQ4_NL 1"), "\(inspect.output)")
        #expect(inspect.output.contains("no kernels for IQ4_NL") && inspect.output.contains("generate"), "\(inspect.output)")
        let json = try await BatonProcess.run(["inspect", "--model", url.path, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect(object?["unsupported_tensor_types"] as? [String] == ["IQ4_NL"])
        let generate = try await BatonProcess.run(["generate", "--model", url.path, "--prompt", "Hi", "--max-tokens", "2"])
        #expect(generate.status != 0)
        #expect(generate.error.contains("blk.0.attn_q.weight") && generate.error.contains("IQ4_NL"), "\(generate.error)")
    }

    @Test("inspect, generate and serve work on the Q4_K_M requantization")
    func q4KM() async throws {
        let model = try Self.testModel("Q4_K_M")
        let inspect = try await BatonProcess.run(["inspect", "--model", model, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(inspect.output.utf8)) as? [String: Any]
        let types = object?["tensor_types"] as? [String: Int] ?? [:]
        #expect(types["Q4_K"] == 16 && types["Q6_K"] == 14 && types["Q5_0"] == 166, "\(types)")
        #expect((object?["unsupported_tensor_types"] as? [String])?.isEmpty == true)

        let generate = try await BatonProcess.run(
            ["generate", "--model", model, "--prompt", "The capital of France is", "--max-tokens", "12", "--temperature", "0"])
        #expect(generate.status == 0, "generate failed: \(generate.error)")
        #expect(generate.output.contains("Paris"), "generate wrote: \(generate.output)")

        let port = try OpenAIClientTests.freePort()
        let server = try BatonProcess(["serve", "--model", model, "--port", "\(port)", "--context", "512", "--served-model-name", "q4km"])
        defer { server.process.terminate() }
        try await server.wait(for: "the server to listen", timeout: .seconds(60)) { $0.standardError.contains("Server started") }
        let reply = try await HTTP.post(
            "http://127.0.0.1:\(port)/v1/completions",
            json: #"{"model": "q4km", "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}"#)
        #expect(reply.status == 200, "serve answered \(reply.status): \(reply.body)")
        #expect(reply.body.contains("Paris"), "\(reply.body)")
        kill(server.process.processIdentifier, SIGINT)
        #expect(try await server.exitStatus(timeout: .seconds(20)) == 0)
    }
}
