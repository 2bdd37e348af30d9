import Foundation
import Testing

/// `baton join` against a real `baton placement --ca-key`: a box with no certificate joins with a token from
/// `baton token create`, and `baton worker` then registers with the certificate it got; each way a join must fail
/// fails with its own message, and placement logs the caller and the token id, never the secret.
@Suite("Joining a cluster with a token, as processes")
struct JoinProcessTests {
    @Test("a decode worker joins with a token, registers with the certificate it got, and every misuse of a token is refused")
    func joinThenRegister() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-join-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certs = directory.appendingPathComponent("certs").path
        let state = directory.appendingPathComponent("state").path
        let joined = directory.appendingPathComponent("joined").path
        let made = try await BatonProcess.run(["certs", "--out", certs, "--nodes", "placement,router"])
        #expect(made.status == 0, "\(made.error)")
        let placement = "127.0.0.1:\(try OpenAIClientTests.freePort())"
        let placementProcess = try BatonProcess([
            "placement", "--listen", placement, "--state-dir", state, "--certs", certs, "--node", "placement",
            "--ca-key", "\(certs)/ca-key.pem",
        ])
        var worker: BatonProcess?
        defer {
            for process in [placementProcess, worker].compactMap({ $0 }) where process.process.isRunning {
                kill(process.process.processIdentifier, SIGKILL)
            }
        }
        try await placementProcess.wait(for: "placement to listen") { $0.standardError.contains("placement service listening") }

        func token(_ roles: String, ttl: String = "1h", certs: String = certs) async throws -> String {
            let created = try await BatonProcess.run([
                "token", "create", "--state-dir", state, "--certs", certs, "--roles", roles, "--ttl", ttl,
            ])
            #expect(created.status == 0, "\(created.error)")
            return created.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func join(
            _ token: String, name: String, roles: String, out: String = joined, viaFile: Bool = false
        ) async throws -> (status: Int32, output: String, error: String) {
            // From a file the secret stays out of the process list.
            let file = directory.appendingPathComponent("token-\(name).txt").path
            if viaFile { try ClusterLoopbackTests.write(file, token + "\n") }
            return try await BatonProcess.run(
                ["join", "--placement", placement] + (viaFile ? ["--token-file", file] : ["--token", token])
                    + ["--name", name, "--roles", roles, "--out", out])
        }

        // The join: key, certificate and CA land where --certs DIR --node NAME reads them, the key 0600.
        let decodeToken = try await token("decode+prefill")
        let secret = String(decodeToken.split(separator: ".")[1])
        let id = String(decodeToken.split(separator: ".")[0])
        let both = try await BatonProcess.run([
            "join", "--placement", placement, "--token", decodeToken, "--token-file", "/dev/null", "--name", "decode-5",
            "--roles", "decode", "--out", joined,
        ])
        #expect(both.status != 0 && both.error.contains("one way only"), "\(both.error)")
        let result = try await join(decodeToken, name: "decode-5", roles: "decode", viaFile: true)
        #expect(result.status == 0, "\(result.error)")
        for (file, mode) in [("decode-5-key.pem", 0o600), ("decode-5.pem", 0o644), ("ca.pem", 0o644)] {
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(joined)/\(file)")
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == mode, "\(file)")
        }
        #expect(try String(contentsOfFile: "\(joined)/ca.pem", encoding: .utf8) == String(contentsOfFile: "\(certs)/ca.pem", encoding: .utf8))

        // The joined node is a worker like any other: it registers as decode-5.
        let config = try ClusterLoopbackTests.writeWorkerConfig(in: directory, name: "decode-5", role: "decode")
        worker = try BatonProcess([
            "worker", "--role", "decode", "--placement", placement, "--listen", "127.0.0.1:\(try OpenAIClientTests.freePort())",
            "--certs", joined, "--node", "decode-5", "--config", config, "--context", "512", "--threads", "1",
        ])
        let workers = try await ClusterLoopbackTests.waitForWorkers(count: 1, placement: placement, certs: certs)
        #expect(workers.contains { $0["name"] as? String == "decode-5" && $0["status"] as? String == "active" })

        // Refusals, each with its own reason.
        let other = directory.appendingPathComponent("other").path
        let reused = try await join(decodeToken, name: "decode-6", roles: "decode", out: other)
        #expect(reused.status != 0 && reused.error.contains("401 used_token") && reused.error.contains("decode-5"), "\(reused.error)")

        let narrow = try await token("decode")
        let beyond = try await join(narrow, name: "decode-6", roles: "prefill", out: other)
        #expect(beyond.status != 0 && beyond.error.contains("403 roles_beyond_token"), "\(beyond.error)")

        let taken = try await join(narrow, name: "decode-5", roles: "decode", out: other)
        #expect(taken.status != 0 && taken.error.contains("409 name_taken"), "\(taken.error)")

        let brief = try await token("decode", ttl: "1s")
        try await Task.sleep(for: .milliseconds(1500))
        let expired = try await join(brief, name: "decode-7", roles: "decode", out: other)
        #expect(expired.status != 0 && expired.error.contains("401 expired_token"), "\(expired.error)")

        // A token pinning another cluster's CA is refused before its secret leaves the box.
        let otherCerts = directory.appendingPathComponent("other-certs").path
        #expect(try await BatonProcess.run(["certs", "--out", otherCerts, "--nodes", "placement"]).status == 0)
        let foreign = try await token("decode", certs: otherCerts)
        let mismatch = try await join(foreign, name: "decode-8", roles: "decode", out: other)
        #expect(mismatch.status != 0 && mismatch.error.contains("but the join token pins"), "\(mismatch.error)")
        let foreignID = String(foreign.split(separator: ".")[0])
        #expect(!placementProcess.standardError.contains(foreignID), "the mismatched token reached placement")
        #expect(!FileManager.default.fileExists(atPath: "\(other)/decode-8-key.pem"))

        // Revoked tokens issue nothing; list shows how each token ended.
        let revocable = try await token("decode")
        let revokedID = String(revocable.split(separator: ".")[0])
        #expect(try await BatonProcess.run(["token", "revoke", "--state-dir", state, revokedID]).status == 0)
        let revoked = try await join(revocable, name: "decode-9", roles: "decode", out: other)
        #expect(revoked.status != 0 && revoked.error.contains("401 revoked_token"), "\(revoked.error)")
        let list = try await BatonProcess.run(["token", "list", "--state-dir", state])
        #expect(list.output.contains("\(id) decode+prefill") && list.output.contains("used") && list.output.contains("revoked"), "\(list.output)")

        // Placement's log names the caller and the token id of each join and refusal, and never a secret.
        let log = placementProcess.standardError
        #expect(log.contains("issued a certificate for decode-5 (decode) to") && log.contains("with join token \(id)"), "\(log)")
        #expect(log.contains("refused a join from") && log.contains("127.0.0.1"))
        #expect(!log.contains(secret))
        #expect(!(try String(contentsOfFile: "\(state)/join-tokens.json", encoding: .utf8)).contains(secret))
    }

    @Test("placement refuses --ca-key with a key that is not the CA's, and with --insecure")
    func wrongKey() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-join-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let certs = directory.appendingPathComponent("certs").path
        #expect(try await BatonProcess.run(["certs", "--out", certs, "--nodes", "placement"]).status == 0)
        let wrong = try await BatonProcess.run([
            "placement", "--listen", "127.0.0.1:0", "--state-dir", directory.appendingPathComponent("state").path,
            "--certs", certs, "--node", "placement", "--ca-key", "\(certs)/placement-key.pem",
        ], timeout: .seconds(30))
        #expect(wrong.status != 0 && wrong.error.contains("does not belong to the CA certificate"), "\(wrong.error)")
        let insecure = try await BatonProcess.run([
            "placement", "--listen", "127.0.0.1:0", "--state-dir", directory.appendingPathComponent("state").path,
            "--insecure", "--ca-key", "\(certs)/ca-key.pem",
        ], timeout: .seconds(30))
        #expect(insecure.status != 0 && insecure.error.contains("--ca-key needs TLS"), "\(insecure.error)")
    }
}
