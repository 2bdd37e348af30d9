import Foundation
import Testing

/// Prefill and decode in two real `baton` processes whose KV crosses by one-sided RDMA WRITEs, the verbs
/// served by the emulated provider (BATON_IBVERBS_LIBRARY=libBatonFakeVerbs.so): the WRITEs go from one
/// process's memory into the other's, the control stream stays on mutual TLS.
@Suite("Two-process KV hand-off over emulated RDMA", .serialized)
struct RDMAHandoffProcessTests {
    /// Both processes load the emulated provider (and `faults`, in the process given them).
    static func environment(faults: String? = nil) throws -> [String: String] {
        var environment = ["BATON_IBVERBS_LIBRARY": try BatonProcess.builtProduct("libBatonFakeVerbs.so").path]
        if let faults { environment["BATON_FAKEVERBS_FAULTS"] = faults }
        return environment
    }

    @Test("over RDMA the decode process generates what baton generate does, and both ends say RDMA")
    func rdmaMatchesGenerate() async throws {
        let certificates = try await KVHandoffProcessTests.makeCertificates(nodes: "prefill:prefill+router,decode")
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        let environment = try Self.environment()
        let (decode, port) = try await KVHandoffProcessTests.startDecode(
            ["--certs", certificates, "--node", "decode", "--requests", "2"], environment: environment)
        // `--transport rdma` makes the prefill process fail unless its report says RDMA.
        try await KVHandoffProcessTests.expectMatchesGenerate(
            decode: decode, port: port, security: ["--certs", certificates, "--node", "prefill"],
            cases: [
                .init(sampling: ["--max-tokens", "24", "--temperature", "0", "--seed", "1"], transport: "rdma", expectedTransport: "rdma"),
                .init(sampling: ["--max-tokens", "16", "--seed", "77", "--temperature", "1.1", "--repeat-penalty", "1.2"],
                      transport: "rdma", expectedTransport: "rdma"),
            ],
            environment: environment)
        #expect(try await decode.exitStatus() == 0, "decode exits after its 2 requests: \(decode.standardError)")
        #expect(decode.standardError.contains("RDMA EMULATED from "), "the emulated provider is announced: \(decode.standardError)")
    }

    @Test("a decode process whose device refuses falls back to TLS HTTP/2, says why, and still decodes exactly")
    func refusedDeviceFallsBack() async throws {
        let certificates = try await KVHandoffProcessTests.makeCertificates(nodes: "prefill:prefill+router,decode")
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        let (decode, port) = try await KVHandoffProcessTests.startDecode(
            ["--certs", certificates, "--node", "decode", "--requests", "1"],
            environment: try Self.environment(faults: "ibv_reg_mr=ENOMEM"))
        let sampling = ["--max-tokens", "12", "--temperature", "0", "--seed", "1"]
        let prefill = try await BatonProcess.run(
            ["kv-handoff", "prefill", "--connect", "127.0.0.1:\(port)", "--prompt", KVHandoffProcessTests.prompt,
             "--transport", "rdma", "--request-id", "refused", "--certs", certificates, "--node", "prefill"] + sampling,
            environment: try Self.environment())
        #expect(prefill.status == 1, "--transport rdma insists on RDMA: \(prefill.error)")
        #expect(prefill.error.contains("Error: --transport rdma, but the transfer went over tls-h2"), "\(prefill.error)")
        // The prefill side prints what the decode process generated before it refuses the transport.
        let line = prefill.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { $0["request_id"] as? String == "refused" } ?? [:]
        #expect(line["transport"] as? String == "tls-h2")
        #expect(line["text"] as? String == (try await KVHandoffProcessTests.generateText(sampling)))
        #expect(
            decode.standardError.contains(
                "RDMA unavailable for request refused, using the TLS stream: RDMA error: ibv_reg_mr: Cannot allocate memory (errno 12)"),
            "\(decode.standardError)")
        #expect(try await decode.exitStatus() == 0)
    }

    @Test("a decode process that dies mid-transfer fails the prefill promptly, not at its timeout")
    func peerDiesMidTransfer() async throws {
        let certificates = try await KVHandoffProcessTests.makeCertificates(nodes: "prefill:prefill+router,decode")
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        // The decode process kills itself (SIGKILL) as layer 3's WRITE completes, its queue pair and registered
        // buffer left behind on the fabric; a longer prompt keeps the prefill computing layers meanwhile.
        let (decode, port) = try await KVHandoffProcessTests.startDecode(
            ["--certs", certificates, "--node", "decode", "--requests", "1"],
            environment: try Self.environment(faults: "kill_on_receive=9@3#1"))
        let prompt = Array(repeating: KVHandoffProcessTests.prompt, count: 8).joined(separator: " ")
        let started = ContinuousClock.now
        let prefill = try await BatonProcess.run(
            ["kv-handoff", "prefill", "--connect", "127.0.0.1:\(port)", "--prompt", prompt, "--transport", "rdma",
             "--timeout", "20", "--certs", certificates, "--node", "prefill", "--max-tokens", "4"],
            environment: try Self.environment())
        let elapsed = ContinuousClock.now - started
        #expect(prefill.status == 1, "the transfer fails: \(prefill.error)")
        #expect(prefill.error.contains("transport retry counter exceeded"), "the dead peer is reported by RDMA: \(prefill.error)")
        #expect(elapsed < .seconds(20), "failed by detection, not by the 20 s idle timeout: \(elapsed)")
        _ = try await decode.exitStatus(timeout: .seconds(10))
        #expect(decode.process.terminationReason == .uncaughtSignal && decode.process.terminationStatus == 9)
    }
}
