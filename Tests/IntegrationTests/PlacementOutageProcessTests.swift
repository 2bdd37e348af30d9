import Foundation
import Testing

/// Placement off the request path, with real processes: the router chooses from the membership snapshot
/// placement pushes, so killing placement with SIGKILL costs no request; `/health` says so meanwhile.
@Suite("Placement outage")
struct PlacementOutageProcessTests {
    @Test("the router serves while placement is killed with SIGKILL, reports degraded, and is ready again after a restart")
    func routerSurvivesPlacementKill() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-outage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certs = directory.appendingPathComponent("certs").path
        let made = try await BatonProcess.run(["certs", "--out", certs, "--nodes", "placement,router,prefill-0,decode-0,decode-1"])
        #expect(made.status == 0, "\(made.error)")
        let policy = directory.appendingPathComponent("policy.yaml").path
        try ClusterLoopbackTests.write(policy, """
            disaggregation:
              min_prompt_tokens: 0
            membership:
              heartbeat_timeout_seconds: 5
            """)
        let placementAddress = "127.0.0.1:\(try OpenAIClientTests.freePort())"
        let placementArguments = [
            "placement", "--config", policy, "--listen", placementAddress, "--state-dir",
            directory.appendingPathComponent("placement").path, "--certs", certs, "--node", "placement",
        ]
        var processes: [BatonProcess] = []
        defer { for process in processes where process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) } }
        let placement = try BatonProcess(placementArguments)
        processes.append(placement)
        func worker(_ name: String, _ role: String) throws -> BatonProcess {
            try BatonProcess([
                "worker", "--role", role, "--placement", placementAddress, "--listen", "127.0.0.1:\(try OpenAIClientTests.freePort())",
                "--certs", certs, "--node", name, "--context", "512", "--threads", "1",
            ])
        }
        processes.append(try worker("prefill-0", "prefill"))
        processes.append(try worker("decode-0", "decode"))
        let routerPort = try OpenAIClientTests.freePort()
        let router = try BatonProcess([
            "router", "--placement", placementAddress, "--certs", certs, "--node", "router", "--port", "\(routerPort)",
            "--context", "512",
        ])
        processes.append(router)
        let base = "http://127.0.0.1:\(routerPort)"
        _ = try await ClusterLoopbackTests.waitForWorkers(count: 2, placement: placementAddress, certs: certs)
        try await Self.waitForHealth(base, "ok", router: router)
        var (code, body) = try await ClusterLoopbackTests.chat(base, "Hello before the outage.")
        #expect(code == 200, "\(body)")

        // A worker joining is a membership change: the router's snapshot version goes up.
        let before = try await Self.metric(base, "baton_router_placement_snapshot_version")
        processes.append(try worker("decode-1", "decode"))
        let deadline = ContinuousClock.now + .seconds(120)
        while try await Self.metric(base, "baton_router_placement_snapshot_version") <= before, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let joined = try await Self.metric(base, "baton_router_placement_snapshot_version")
        #expect(joined > before, "the snapshot version did not advance when decode-1 joined")

        // SIGKILL: no goodbye, connections just break.
        kill(placement.process.processIdentifier, SIGKILL)
        let health = try await Self.waitForHealth(base, "degraded", router: router)
        #expect((health["reason"] as? String)?.contains("unreachable") == true, "\(health)")
        #expect(health["since"] is String, "\(health)")
        for index in 0..<4 {
            (code, body) = try await ClusterLoopbackTests.chat(base, "Still there, number \(index)?")
            #expect(code == 200, "while placement is down: \(body)")
        }
        #expect(try await Self.metric(base, "baton_router_placement_connected") == 0)
        #expect(try await Self.metric(base, "baton_router_placement_snapshot_age_seconds") > 0)

        let restarted = try BatonProcess(placementArguments)
        processes.append(restarted)
        try await Self.waitForHealth(base, "ok", router: router)
        (code, body) = try await ClusterLoopbackTests.chat(base, "Hello after the outage.")
        #expect(code == 200, "after the restart: \(body)")
        #expect(try await Self.metric(base, "baton_router_placement_snapshot_version") > joined,
                "a restarted placement continues above its former versions")
        #expect(router.standardError.contains("placement unreachable, serving from the last membership snapshot"))

        for process in processes where process.process.isRunning { kill(process.process.processIdentifier, SIGTERM) }
        for process in processes { _ = try? await process.exitStatus(timeout: .seconds(40)) }
    }

    /// Polls `/health` until its JSON `status` is `status`; returns the body.
    @discardableResult
    static func waitForHealth(_ base: String, _ status: String, router: BatonProcess,
                              timeout: Duration = .seconds(120)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            if let answer = try? await HTTP.request("\(base)/health", method: "GET", body: nil) {
                last = "\(answer.status) \(answer.body)"
                if answer.status == 200, let json = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                   json["status"] as? String == status {
                    return json
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ProcessFailure("the router's /health never said \(status); last answer: \(last); stderr:\n\(router.standardError)")
    }

    /// The value of an unlabelled metric in the router's `/metrics`.
    static func metric(_ base: String, _ name: String) async throws -> Double {
        let text = try await HTTP.get("\(base)/metrics")
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            if let value = Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) { return value }
        }
        throw ProcessFailure("no \(name) in /metrics:\n\(text)")
    }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
