import Foundation
import Testing

/// `Deploy/scripts/mismatched_boxes.py`: the set-up it would make (tbf caps, the slow box's CPU quota), the
/// round-robin variant of the policy and the simulator's cluster file, from its --dry-run. The real run needs root
/// and minutes of two cores; README's "Mismatched boxes" section has its figures.
@Suite("Mismatched boxes script")
struct MismatchedBoxesScriptTests {
    func dryRun(_ arguments: [String]) throws -> String {
        let script = DeployFiles.url("Deploy/scripts/mismatched_boxes.py")
        let run = try ToolRun.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script.path, "--dry-run"] + arguments)
        #expect(run.status == 0, "mismatched_boxes.py --dry-run failed:\n\(run.output)")
        return run.standardOutput
    }

    @Test("links are capped with tbf on both ends and the slow box gets its share of a core as a cfs quota")
    func setUp() throws {
        let output = try dryRun(["--share", "0.2", "--period-us", "5000", "--slow-mbit", "20", "--fast-mbit", "1000"])
        let lines = output.split(separator: "\n").map(String.init)
        let slow = lines.filter { $0.contains("tbf rate 20mbit") }
        #expect(slow.count == 2, "\(output)")
        #expect(slow.contains { $0.hasPrefix("ip netns exec ") }, "the worker's own end is capped too:\n\(output)")
        // The prefill box and the fast decode box: both ends of each.
        #expect(lines.filter { $0.contains("tbf rate 1000mbit burst 10000kbit") }.count == 4, "\(output)")
        #expect(lines.contains { $0.hasPrefix("echo 5000 > ") && $0.hasSuffix("/cpu.cfs_period_us") }, "\(output)")
        // 0.2 × 5 ms = 1 ms, the kernel's smallest quota.
        #expect(lines.contains { $0.hasPrefix("echo 1000 > ") && $0.hasSuffix("/cpu.cfs_quota_us") }, "\(output)")
        let tiny = try dryRun(["--share", "0.05", "--period-us", "4000"])
        #expect(tiny.contains("echo 1000 > "), "a quota below 1 ms is raised to 1 ms:\n\(tiny)")
    }

    @Test("the round-robin variant replaces the policy's balancing block and keeps everything else")
    func roundRobinPolicy() throws {
        let output = try dryRun([])
        let policy = try #require(output.components(separatedBy: "--- round-robin policy\n").last?
            .components(separatedBy: "--- simulated cluster\n").first)
        let original = try DeployFiles.text("Deploy/config/policy.yaml")
        #expect(policy.components(separatedBy: "\nbalancing:").count == 2, "one balancing block:\n\(policy)")
        #expect(policy.hasSuffix("balancing:\n  strategy: round_robin\n"))
        #expect(!policy.contains("strategy: least_loaded"))
        for key in ["link_weight: 0.3", "min_prompt_tokens: 64", "max_queue_depth: 4"] {
            #expect(original.contains(key) && policy.contains(key), "\(key) kept")
        }
    }

    @Test("the simulated cluster has each box's role, profile, link in GB/s and its own host")
    func simulatedCluster() throws {
        let output = try dryRun(["--share", "0.25", "--slow-mbit", "40", "--slow-delay-ms", "15"])
        let cluster = try #require(output.components(separatedBy: "--- simulated cluster\n").last)
        #expect(cluster.contains("  - name: decode-slow\n    role: decode\n"), "\(cluster)")
        #expect(cluster.contains("  - name: prefill\n    role: prefill\n"), "\(cluster)")
        #expect(cluster.contains("sgemm_gflops: 23.750, memory_read_gbps: 4.500"), "a quarter of the example box:\n\(cluster)")
        #expect(cluster.contains("link: {bandwidth_gbps: 0.005000, latency_ms: 15.0}"), "40 Mbit/s = 0.005 GB/s:\n\(cluster)")
        #expect(cluster.contains("host_id: decode-fast-host") && cluster.contains("host_id: decode-slow-host"))
    }
}
