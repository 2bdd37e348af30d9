import Foundation
import Testing

/// `baton` on the test model of every architecture (`bash Deploy/setup.sh --test-models`): inspect names it,
/// generate completes a prompt; on Gemma 3 270M (a base model without a chat template) serve and up answer raw
/// completions and refuse chat with the 400 that says how to give a template.
@Suite("Architectures through the baton executable")
struct ArchitectureProcessTests {
    static func testModel(_ name: String) throws -> String {
        let path = TensorTypeProcessTests.modelDirectory + "/test/" + name
        guard FileManager.default.fileExists(atPath: path) else {
            throw ProcessFailure("test model \(path) is missing: make it with `bash Deploy/setup.sh --test-models`")
        }
        return path
    }

    static let models: [(file: String, architecture: String, tokenizer: String)] = [
        ("gemma-3-270m-q4_k_m.gguf", "gemma3", "llama"), ("qwen2-random.gguf", "qwen2", "gpt2"),
        ("qwen3-random.gguf", "qwen3", "gpt2"), ("llama3-random.gguf", "llama", "gpt2"),
        ("mistral-spm-random.gguf", "llama", "llama"), ("gemma3-random.gguf", "gemma3", "gpt2"),
    ]

    @Test("inspect names each architecture and generate completes a prompt with it", arguments: models.indices)
    func inspectAndGenerate(_ index: Int) async throws {
        let (file, architecture, tokenizer) = Self.models[index]
        let model = try Self.testModel(file)
        let inspect = try await BatonProcess.run(["inspect", "--model", model, "--json"])
        #expect(inspect.status == 0, "inspect failed: \(inspect.error)")
        let object = try JSONSerialization.jsonObject(with: Data(inspect.output.utf8)) as? [String: Any]
        #expect(object?["architecture"] as? String == architecture)
        #expect(object?["tokenizer_model"] as? String == tokenizer)
        #expect((object?["unsupported_tensor_types"] as? [String])?.isEmpty == true)

        let generate = try await BatonProcess.run(
            ["generate", "--model", model, "--prompt", "The capital of France is", "--max-tokens", "6", "--temperature", "0"])
        #expect(generate.status == 0, "generate failed: \(generate.error)")
        #expect(!generate.output.isEmpty)
        if architecture == "gemma3" && tokenizer == "llama" {
            // llama.cpp's greedy continuation begins " the capital of the country of France."
            #expect(generate.output.hasPrefix(" the capital of"), "generate wrote: \(generate.output)")
        }
    }

    @Test("serve on Gemma 3 270M answers completions and refuses chat, saying how to give a template")
    func serveBaseModel() async throws {
        let model = try Self.testModel("gemma-3-270m-q4_k_m.gguf")
        let inspect = try await BatonProcess.run(["inspect", "--model", model])
        #expect(inspect.output.contains("absent (a base model: chat needs --chat-template FILE"), "\(inspect.output)")

        let port = try OpenAIClientTests.freePort()
        let server = try BatonProcess(["serve", "--model", model, "--port", "\(port)", "--context", "1024"])
        defer { server.process.terminate() }
        try await server.wait(for: "the server to listen", timeout: .seconds(60)) { $0.standardError.contains("Server started") }
        try await Self.answersCompletionsAndRefusesChat(port: port)
        kill(server.process.processIdentifier, SIGINT)
        #expect(try await server.exitStatus(timeout: .seconds(20)) == 0)
    }

    @Test("up --model runs Gemma 3 270M through the prefill/decode split")
    func upBaseModel() async throws {
        let model = try Self.testModel("gemma-3-270m-q4_k_m.gguf")
        let port = try OpenAIClientTests.freePort()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("baton-up-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let up = try BatonProcess([
            "up", "--model", model, "--port", "\(port)", "--state-dir", state, "--context", "1024", "--threads", "1",
        ])
        defer { if up.process.isRunning { kill(up.process.processIdentifier, SIGKILL) } }
        try await up.wait(for: "the cluster to be ready", timeout: .seconds(180)) {
            $0.standardOutput.contains("http://127.0.0.1:\(port)/v1") || !$0.process.isRunning
        }
        #expect(up.process.isRunning, "baton up stopped: \(up.standardError)")
        try await Self.answersCompletionsAndRefusesChat(port: port)
        let metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.contains(#"baton_router_worker_requests_total{worker="decode-0",role="decode"}"#), "\(metrics)")
        kill(up.process.processIdentifier, SIGINT)
        #expect(try await up.exitStatus(timeout: .seconds(30)) == 0)
    }

    static func answersCompletionsAndRefusesChat(port: Int) async throws {
        let completion = try await HTTP.post(
            "http://127.0.0.1:\(port)/v1/completions",
            json: #"{"model": "gemma-3-270m-q4_k_m", "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}"#)
        #expect(completion.status == 200, "completions answered \(completion.status): \(completion.body)")
        #expect(completion.body.contains(" the capital of"), "\(completion.body)")
        let chat = try await HTTP.post(
            "http://127.0.0.1:\(port)/v1/chat/completions",
            json: #"{"model": "gemma-3-270m-q4_k_m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}"#)
        #expect(chat.status == 400, "chat answered \(chat.status): \(chat.body)")
        #expect(chat.body.contains("chat_template_missing") && chat.body.contains("--chat-template FILE"), "\(chat.body)")
    }
}
