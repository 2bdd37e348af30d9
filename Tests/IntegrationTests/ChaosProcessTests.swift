import Foundation
import Testing

/// Nothing one failure can break, with real processes across hosts: `Deploy/scripts/chaos.py` puts placement, the
/// router, a prefill worker and two decode workers each in a network namespace of its own (on loopback where none
/// can be made), with its own host identity and delayed links through a proxy, and while seeded and greedy streams
/// run it kills each kind of process with SIGKILL and cuts a decode worker's link for 10 s.
@Suite("Chaos across hosts", .serialized)
struct ChaosProcessTests {
    @Test("kill -9 of a decode worker, the prefill worker and placement, and a cut link: no client sees a failure or a different text")
    func chaosIsInvisibleToClients() async throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = package.appendingPathComponent("Deploy/scripts/chaos.py").path
        let (status, output) = try await ClusterUpTests.runPython("/usr/bin/python3", [
            script, "--baton", try BatonProcess.executable().path, "--json", "--seed", "7", "--streams", "4",
            "--max-tokens", "32", "--gap", "0.5:2", "--restart-after", "2", "--cut-seconds", "10",
        ], timeout: .seconds(300))
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.lastIndex(of: "{"), "no JSON report (exit \(status)):\n\(output)")
        let json = lines[start...].joined(separator: "\n")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(output)")

        #expect(status == 0, "\(output)")
        #expect(report["failed"] as? Int == 0, "\(output)")
        #expect(report["differing"] as? Int == 0, "\(output)")
        #expect((report["requests"] as? Int ?? 0) >= 4, "\(output)")
        #expect((report["events"] as? [Any])?.count == 4, "every event happened: \(output)")
        // As root with `ip` the hosts are namespaces, unless the kernel or the container refuses them (then the
        // script says why); otherwise loopback.
        let mode = report["mode"] as? String ?? ""
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
        if getuid() == 0 && ip {
            #expect(mode == "network namespaces" || mode.contains("`ip netns add` failed"), "\(output)")
        } else {
            #expect(mode.hasPrefix("loopback ("), "\(output)")
        }
        let migrations = report["migrations_by_reason"] as? [String: Int] ?? [:]
        #expect(migrations.values.reduce(0, +) >= 1, "the kills and the cut moved requests: \(output)")
        // Distinct host identities: KV between the workers went over mutual-TLS HTTP/2, never shared memory.
        let transports = report["kv_bytes_by_transport"] as? [String: Int] ?? [:]
        #expect(Array(transports.keys) == ["tls-h2"], "\(transports)")
    }
}
