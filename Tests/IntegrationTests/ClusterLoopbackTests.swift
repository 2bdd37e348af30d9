import Foundation
import Testing

/// A loopback cluster of real processes — placement, two prefill and two decode workers with different
/// declared profiles, and the router — driven over HTTP: the policy decides where requests run, a policy
/// edit takes effect without a failed request, and a restarted placement service still knows every worker.
@Suite("Loopback cluster")
struct ClusterLoopbackTests {
    static let workers: [(name: String, role: String, gflops: Int, gbps: Int)] = [
        ("p-big", "prefill", 400, 10), ("p-small", "prefill", 50, 10),
        ("d-fast", "decode", 20, 40), ("d-slow", "decode", 20, 8),
    ]

    @Test("the policy places requests, a policy edit applies without a failed request, and placement restarts knowing every worker")
    func loopbackCluster() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certs = directory.appendingPathComponent("certs").path
        let nodes = ["placement", "router"] + Self.workers.map { "\($0.name):\($0.role)" }
        let made = try await BatonProcess.run(["certs", "--out", certs, "--nodes", nodes.joined(separator: ",")])
        #expect(made.status == 0, "\(made.error)")

        // Prefill only on boxes with ≥ 100 GFLOP/s; decode ranked by bandwidth. Every prompt is split.
        let policy = directory.appendingPathComponent("policy.yaml").path
        try Self.write(policy, """
            prefill:
              min_gflops: 100
            disaggregation:
              min_prompt_tokens: 0
            membership:
              heartbeat_timeout_seconds: 5
            """)
        let placementPort = try OpenAIClientTests.freePort()
        let placementAddress = "127.0.0.1:\(placementPort)"
        let state = directory.appendingPathComponent("placement").path
        let placementArguments = [
            "placement", "--config", policy, "--listen", placementAddress, "--state-dir", state, "--certs", certs,
            "--node", "placement",
        ]
        var placement = try BatonProcess(placementArguments)
        var processes: [BatonProcess] = [placement]
        defer { for process in processes where process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) } }

        for worker in Self.workers {
            let config = try Self.writeWorkerConfig(
                in: directory, name: worker.name, role: worker.role, gflops: worker.gflops, gbps: worker.gbps,
                labels: "box: \(worker.name)")
            let port = try OpenAIClientTests.freePort()
            processes.append(try BatonProcess([
                "worker", "--role", worker.role, "--placement", placementAddress, "--listen", "127.0.0.1:\(port)",
                "--certs", certs, "--node", worker.name, "--config", config, "--context", "512", "--threads", "1",
            ]))
        }
        let routerPort = try OpenAIClientTests.freePort()
        let router = try BatonProcess([
            "router", "--placement", placementAddress, "--certs", certs, "--node", "router", "--port", "\(routerPort)",
            "--context", "512",
        ])
        processes.append(router)
        let base = "http://127.0.0.1:\(routerPort)"

        // All four registered, in the roles their profiles earn.
        let status = try await Self.waitForWorkers(count: 4, placement: placementAddress, certs: certs)
        let names = Set(status.compactMap { $0["name"] as? String })
        #expect(names == Set(Self.workers.map(\.name)))
        try await router.wait(for: "the router to be ready", timeout: .seconds(60)) { _ in
            (try? Self.syncStatus("\(base)/health")) == 200
        }

        // The policy's assignment: prefill on p-big (p-small lacks the GFLOP/s), decode on d-fast (bandwidth).
        for i in 0..<3 {
            let (code, body) = try await Self.chat(base, "Say hello number \(i).")
            #expect(code == 200, "\(body)")
        }
        var counts = try await Self.workerCounts(base)
        #expect(counts["p-big/prefill"] == 3 && counts["p-small/prefill"] == nil, "\(counts)")
        #expect(counts["d-fast/decode"] == 3 && counts["d-slow/decode"] == nil, "\(counts)")

        // A policy edit while requests keep coming: none fails, and new requests follow the new policy.
        let failures = FailureLog()
        // Stopped by a flag, not by cancelling: a cancelled request would count as a failure.
        let traffic = Task {
            var sent = 0
            while !failures.stopped {
                let (code, body) = (try? await Self.chat(base, "Count to \(sent).")) ?? (0, "transport error")
                if code != 200 { failures.add("\(code): \(body)") }
                sent += 1
            }
            return sent
        }
        try await Task.sleep(for: .milliseconds(500))
        try Self.write(policy, """
            prefill:
              workers: [p-small]
            decode:
              exclude_workers: [d-fast]
            disaggregation:
              min_prompt_tokens: 0
            membership:
              heartbeat_timeout_seconds: 5
            """)
        let deadline = ContinuousClock.now + .seconds(30)
        repeat {
            try await Task.sleep(for: .milliseconds(300))
            counts = try await Self.workerCounts(base)
        } while (counts["p-small/prefill"] == nil || counts["d-slow/decode"] == nil) && ContinuousClock.now < deadline
        failures.stop()
        let sent = await traffic.value
        #expect(counts["p-small/prefill"] != nil && counts["d-slow/decode"] != nil, "the edited policy never applied: \(counts)")
        #expect(failures.all.isEmpty, "\(failures.all.count) of \(sent) requests failed during the policy edit: \(failures.all.prefix(3))")

        // Restart placement on the same state directory: it knows every worker at once, from its log.
        kill(placement.process.processIdentifier, SIGTERM)
        #expect(try await placement.exitStatus(timeout: .seconds(20)) == 0, "\(placement.standardError)")
        placement = try BatonProcess(placementArguments)
        processes.append(placement)
        let replayed = try await Self.waitForWorkers(count: 4, placement: placementAddress, certs: certs, timeout: .seconds(20))
        #expect(Set(replayed.compactMap { $0["name"] as? String }) == Set(Self.workers.map(\.name)))
        let (code, body) = try await Self.chat(base, "Are you still there?")
        #expect(code == 200, "after the placement restart: \(body)")

        for process in processes where process.process.isRunning { kill(process.process.processIdentifier, SIGTERM) }
        for process in processes { _ = try? await process.exitStatus(timeout: .seconds(40)) }
    }

    /// Writes a worker config with a declared profile (no measuring at start, the same figures on every box) and
    /// returns its path: one thread, 8 GiB of which 4 free, no RDMA.
    static func writeWorkerConfig(
        in directory: URL, name: String, role: String, gflops: Int = 100, gbps: Int = 20, labels: String? = nil
    ) throws -> String {
        let path = directory.appendingPathComponent("\(name).yaml").path
        try write(path, """
            name: \(name)
            role: \(role)
            threads: 1
            \(labels.map { "labels: {\($0)}" } ?? "")
            profile:
              sgemm_gflops: \(gflops)
              memory_read_gbps: \(gbps)
              memory_total: 8GiB
              memory_free: 4GiB
              cores: 1
              rdma_devices: []
            """)
        return path
    }

    static func write(_ path: String, _ text: String) throws {
        // Write-then-rename, as editors do, so the watcher never reads half a file.
        let temporary = path + ".tmp"
        try (text + "\n").write(toFile: temporary, atomically: false, encoding: .utf8)
        _ = rename(temporary, path)
    }

    static func chat(_ base: String, _ text: String) async throws -> (Int, String) {
        let body = #"{"model": "SmolLM2-135M-Instruct.Q4_1", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "\#(text)"}]}"#
        let (status, answer) = try await HTTP.post("\(base)/v1/chat/completions", json: body)
        return (status, answer)
    }

    static func syncStatus(_ url: String) throws -> Int {
        let semaphore = DispatchSemaphore(value: 0)
        let box = Box()
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 2
        URLSession.shared.dataTask(with: request) { _, response, _ in
            box.value = (response as? HTTPURLResponse)?.statusCode ?? 0
            semaphore.signal()
        }.resume()
        semaphore.wait()
        return box.value
    }

    /// `baton_router_worker_requests_total` by "worker/role".
    static func workerCounts(_ base: String) async throws -> [String: Int] {
        let metrics = try await HTTP.get("\(base)/metrics")
        var counts: [String: Int] = [:]
        for line in metrics.split(separator: "\n") where line.hasPrefix("baton_router_worker_requests_total{") {
            guard let open = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}") else { continue }
            var labels: [String: String] = [:]
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { labels[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            }
            if let worker = labels["worker"], let role = labels["role"],
                let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            {
                counts["\(worker)/\(role)"] = Int(value)
            }
        }
        return counts
    }

    static func waitForWorkers(
        count: Int, placement: String, certs: String, timeout: Duration = .seconds(120)
    ) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            let result = try await BatonProcess.run([
                "cluster", "status", "--placement", placement, "--certs", certs, "--node", "router", "--json", "--timeout", "2",
            ])
            last = result.output + result.error
            if result.status == 0,
                let json = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
                let workers = json["workers"] as? [[String: Any]],
                workers.filter({ ($0["status"] as? String) == "active" }).count >= count
            {
                return workers
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw ProcessFailure("fewer than \(count) workers became active; last `cluster status`:\n\(last)")
    }
}

private final class Box: @unchecked Sendable { var value = 0 }

private final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var failures: [String] = []
    private var stopRequested = false
    func add(_ failure: String) { lock.withLock { failures.append(failure) } }
    var all: [String] { lock.withLock { failures } }
    func stop() { lock.withLock { stopRequested = true } }
    var stopped: Bool { lock.withLock { stopRequested } }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
