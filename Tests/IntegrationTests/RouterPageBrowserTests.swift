import Foundation
import Testing

/// The router's page in real headless Chromium against a live `baton up` (Scripts/page_browser_check.py drives
/// it over the DevTools protocol). Runs when `BATON_BROWSER_TESTS=1`, which `Deploy/test.sh` sets after
/// `Deploy/setup.sh --browser` installed Debian's chromium; screenshots land in `$BATON_TEST_ARTIFACTS`
/// (default `.build/test-artifacts`).
@Suite("Router page in a browser")
struct RouterPageBrowserTests {
    static let enabled = ProcessInfo.processInfo.environment["BATON_BROWSER_TESTS"] == "1"

    static var artifacts: URL {
        if let explicit = ProcessInfo.processInfo.environment["BATON_TEST_ARTIFACTS"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        // Tests/IntegrationTests/ThisFile.swift → the package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/test-artifacts")
    }

    @Test(
        "the page chats, streams, stops, renders hostile output as text, shows the cluster and a killed worker as lost, and fits a narrow window",
        .enabled(if: enabled, "set BATON_BROWSER_TESTS=1 (Deploy/test.sh does, after installing chromium)"))
    func pageInChromium() async throws {
        let chromium = "/usr/bin/chromium"
        #expect(FileManager.default.isExecutableFile(atPath: chromium), "no \(chromium): run `bash Deploy/setup.sh --browser`")
        let port = try OpenAIClientTests.freePort()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("baton-page-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        // Certificates for one more worker than `baton up` runs: the one this test starts itself and kills
        // (a worker of `baton up`'s would be restarted by it and never stay lost).
        let extra = "prefill-extra"
        let certs = try await BatonProcess.run([
            "certs", "--out", state + "/certs", "--nodes", "placement,router,prefill-0,decode-0,\(extra)",
        ])
        #expect(certs.status == 0, "\(certs.error)")

        let up = try BatonProcess(["up", "--port", "\(port)", "--state-dir", state, "--context", "512", "--threads", "1"])
        defer { if up.process.isRunning { kill(up.process.processIdentifier, SIGKILL) } }
        try await up.wait(for: "the cluster to be ready", timeout: .seconds(120)) {
            $0.standardOutput.contains("http://127.0.0.1:\(port)/v1") || !$0.process.isRunning
        }
        let placement = try #require(ClusterUpTests.placementAddress(up.standardError), "\(up.standardError)")
        let worker = try BatonProcess([
            "worker", "--role", "prefill", "--placement", placement, "--listen", "127.0.0.1:0", "--node", extra,
            "--certs", state + "/certs", "--context", "512", "--threads", "1",
        ])
        defer { if worker.process.isRunning { kill(worker.process.processIdentifier, SIGKILL) } }
        try await worker.wait(for: "the extra worker to serve", timeout: .seconds(60)) {
            $0.standardOutput.contains("\"listening\"") || !$0.process.isRunning
        }

        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/page_browser_check.py")
        let (status, report) = try await ClusterUpTests.runPython("/usr/bin/python3", [
            script.path, "--url", "http://127.0.0.1:\(port)", "--kill-pid", "\(worker.process.processIdentifier)",
            "--kill-name", extra, "--artifacts", Self.artifacts.path, "--chromium", chromium,
        ], timeout: .seconds(400))
        print(report)
        #expect(status == 0, "browser checks:\n\(report)\nbaton up stderr:\n\(up.standardError)")
        #expect(report.contains(" 0 failed"), "\(report)")
        for name in ["page-wide.png", "page-lost.png", "page-narrow.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: Self.artifacts.appendingPathComponent(name).path)[.size] as? Int) ?? 0
            #expect(size > 10_000, "screenshot \(name) missing or empty in \(Self.artifacts.path)")
        }

        kill(up.process.processIdentifier, SIGINT)
        #expect(try await up.exitStatus(timeout: .seconds(60)) == 0, "\(up.standardError)")
    }

    @Test(
        "against baton serve with API keys the page asks for a key, refuses a wrong one, then chats and says there is no cluster",
        .enabled(if: enabled, "set BATON_BROWSER_TESTS=1 (Deploy/test.sh does, after installing chromium)"))
    func pageAsksForAKey() async throws {
        let port = try OpenAIClientTests.freePort()
        let keys = FileManager.default.temporaryDirectory.appendingPathComponent("baton-page-keys-\(UUID().uuidString)").path
        try "# the page test's key\nsk-page-test\n".write(toFile: keys, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: keys) }
        let server = try BatonProcess(["serve", "--port", "\(port)", "--context", "512", "--threads", "1", "--api-keys", keys])
        defer { if server.process.isRunning { kill(server.process.processIdentifier, SIGKILL) } }
        try await server.wait(for: "the server to listen", timeout: .seconds(60)) {
            $0.standardError.contains("Server started") || !$0.process.isRunning
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/page_browser_check.py")
        let (status, report) = try await ClusterUpTests.runPython("/usr/bin/python3", [
            script.path, "--url", "http://127.0.0.1:\(port)", "--api-key", "sk-page-test",
            "--artifacts", Self.artifacts.path,
        ], timeout: .seconds(300))
        print(report)
        #expect(status == 0, "browser checks:\n\(report)\nserver stderr:\n\(server.standardError)")
        #expect(report.contains(" 0 failed"), "\(report)")
        kill(server.process.processIdentifier, SIGINT)
        #expect(try await server.exitStatus(timeout: .seconds(20)) == 0)
    }
}
