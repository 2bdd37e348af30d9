import Foundation
import Testing

/// Prefill and decode in two real `baton` processes, the KV streamed between them layer by layer: the decode worker
/// must produce exactly what single-process `baton generate` produces, and refuse a peer from another CA.
@Suite("Two-process KV hand-off", .serialized)
struct KVHandoffProcessTests {
    /// 60 tokens.
    static let prompt =
        "Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker. Every "
        + "morning he opened his shop and wound every clock on the wall, and the children of the village came to "
        + "listen to the ticking and to hear his stories about faraway lands."

    struct Case {
        var sampling: [String]
        var transport: String
        var expectedTransport: String
    }

    static func makeCertificates(nodes: String) async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-it-certs-\(UUID().uuidString)").path
        let result = try await BatonProcess.run(["certs", "--out", directory, "--nodes", nodes])
        #expect(result.status == 0, "baton certs failed: \(result.error)")
        return directory
    }

    /// Starts a decode process and returns it with its port.
    static func startDecode(_ extra: [String], environment: [String: String] = [:]) async throws -> (BatonProcess, Int) {
        let decode = try BatonProcess(
            ["kv-handoff", "decode", "--listen", "127.0.0.1:0", "--idle-exit", "40"] + extra, environment: environment)
        try await decode.wait(for: "the listening port") { $0.jsonLines.first?["listening"] != nil }
        let port = decode.jsonLines.first?["listening"] as? Int ?? 0
        return (decode, port)
    }

    static func generateText(_ sampling: [String], model: [String] = []) async throws -> String {
        let result = try await BatonProcess.run(["generate", "--prompt", prompt] + model + sampling)
        #expect(result.status == 0, "baton generate failed: \(result.error)")
        return result.output
    }

    /// Runs each case through the decode process (the prefill side prints what it generated) and compares with
    /// `baton generate`.
    static func expectMatchesGenerate(
        decode: BatonProcess, port: Int, security: [String], cases: [Case], environment: [String: String] = [:],
        model: [String] = []
    ) async throws {
        for (index, c) in cases.enumerated() {
            let prefill = try await BatonProcess.run(
                ["kv-handoff", "prefill", "--connect", "127.0.0.1:\(port)", "--prompt", prompt, "--transport", c.transport,
                 "--request-id", "case-\(index)"] + security + model + c.sampling,
                environment: environment)
            #expect(prefill.status == 0, "prefill failed: \(prefill.error)")
            let line = prefill.output.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }.last ?? [:]
            #expect(line["request_id"] as? String == "case-\(index)")
            #expect(line["transport"] as? String == c.expectedTransport, "case \(index)")
            let expected = try await generateText(c.sampling, model: model)
            let text = line["text"] as? String
            #expect(!expected.isEmpty)
            #expect(text == expected, "case \(index) (\(c.sampling.joined(separator: " "))): decode produced \(text ?? "nothing")")
            #expect((line["tokens"] as? [Int])?.count == Int(c.sampling[c.sampling.firstIndex(of: "--max-tokens")! + 1]) || line["finish_reason"] as? String == "stop")
        }
    }

    @Test("over mutual TLS and shared memory the decode process generates what baton generate does")
    func mutualTLSAndSharedMemory() async throws {
        let certificates = try await Self.makeCertificates(nodes: "prefill:prefill+router,decode")
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        let (decode, port) = try await Self.startDecode(["--certs", certificates, "--node", "decode", "--requests", "3"])
        try await Self.expectMatchesGenerate(
            decode: decode, port: port, security: ["--certs", certificates, "--node", "prefill"],
            cases: [
                Case(sampling: ["--max-tokens", "24", "--temperature", "0", "--seed", "1"], transport: "tls", expectedTransport: "tls-h2"),
                Case(sampling: ["--max-tokens", "24", "--seed", "5"], transport: "shm", expectedTransport: "shared-memory"),
                Case(sampling: ["--max-tokens", "16", "--seed", "77", "--temperature", "1.1", "--repeat-penalty", "1.2"],
                     transport: "tls", expectedTransport: "tls-h2"),
            ])
        #expect(try await decode.exitStatus() == 0, "decode exits after its 3 requests: \(decode.standardError)")
    }

    @Test("Gemma 3 270M (Q4_K_M, sliding-window layers) splits across two processes and generates what baton generate does")
    func gemma3() async throws {
        let model = ["--model", try ArchitectureProcessTests.testModel("gemma-3-270m-q4_k_m.gguf")]
        let certificates = try await Self.makeCertificates(nodes: "prefill:prefill+router,decode")
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        let (decode, port) = try await Self.startDecode(["--certs", certificates, "--node", "decode", "--requests", "2"] + model)
        try await Self.expectMatchesGenerate(
            decode: decode, port: port, security: ["--certs", certificates, "--node", "prefill"],
            cases: [
                Case(sampling: ["--max-tokens", "16", "--temperature", "0", "--seed", "1"], transport: "tls", expectedTransport: "tls-h2"),
                Case(sampling: ["--max-tokens", "16", "--seed", "9", "--temperature", "0.9"], transport: "tls", expectedTransport: "tls-h2"),
            ],
            model: model)
        #expect(try await decode.exitStatus() == 0, "decode exits after its 2 requests: \(decode.standardError)")
    }

    @Test("plaintext HTTP/2 works when both processes are explicitly insecure")
    func plaintext() async throws {
        let (decode, port) = try await Self.startDecode(["--insecure", "--requests", "1"])
        try await Self.expectMatchesGenerate(
            decode: decode, port: port, security: ["--insecure"],
            cases: [Case(sampling: ["--max-tokens", "12", "--seed", "3"], transport: "tls", expectedTransport: "plaintext-h2")])
        #expect(try await decode.exitStatus() == 0)
        #expect(decode.standardError.contains("WITHOUT TLS"), "insecure mode is logged loudly")
    }

    @Test("a prefill process with a certificate from another CA is refused and the decode process reports it")
    func foreignCertificateIsRefused() async throws {
        let cluster = try await Self.makeCertificates(nodes: "decode")
        let stranger = try await Self.makeCertificates(nodes: "prefill:prefill+router")
        defer {
            try? FileManager.default.removeItem(atPath: cluster)
            try? FileManager.default.removeItem(atPath: stranger)
        }
        let (decode, port) = try await Self.startDecode(["--certs", cluster, "--node", "decode", "--requests", "1"])
        let intruder = try await BatonProcess.run(
            ["kv-handoff", "prefill", "--connect", "127.0.0.1:\(port)", "--prompt", Self.prompt, "--certs", stranger,
             "--node", "prefill", "--max-tokens", "4", "--timeout", "5"])
        #expect(intruder.status != 0, "the intruder fails with a clean error: \(intruder.error)")
        #expect(intruder.error.lowercased().contains("connection") || intruder.error.lowercased().contains("tls"),
                "the intruder says why: \(intruder.error)")
        try await decode.wait(for: "the refusal in the log", timeout: .seconds(10)) {
            $0.standardError.contains("TLS handshake failed")
        }
        #expect(decode.standardError.lowercased().contains("ssl") || decode.standardError.lowercased().contains("certificate"),
                "the refusal names the TLS failure: \(decode.standardError)")
        decode.process.terminate()
        #expect(try await decode.exitStatus(timeout: .seconds(10)) == 0, "SIGTERM stops the decode process cleanly")
    }
}
