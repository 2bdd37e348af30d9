import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Requests resume anywhere: a loopback cluster of real processes (placement, one prefill worker, two decode
/// workers, the router), several concurrent seeded and greedy chat streams, and a worker killed with SIGKILL while
/// they run. Every client must get one stream with no error and exactly the text of an undisturbed run.
@Suite("Requests resume anywhere", .serialized)
struct ResumeProcessTests {
    /// Short prompts run decode-only (their prompt through decode steps on the decode worker); long ones are split
    /// (prefill worker, KV transfer). Greedy and seeded alike.
    static let requests: [StreamRequest] = [
        StreamRequest(prompt: "Count from one to fifty in words, separated by commas.", temperature: 0, seed: nil),
        StreamRequest(prompt: "Write a short story about a lighthouse keeper and a storm.", temperature: 0.8, seed: 11),
        StreamRequest(prompt: Self.longPrompt + " Summarize the story above in a few sentences.", temperature: 0, seed: nil),
        StreamRequest(prompt: Self.longPrompt + " What happens next? Continue the story.", temperature: 0.9, seed: 5),
    ]

    static let longPrompt = String(
        repeating: "Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker. "
            + "Every morning he opened his shop and wound every clock on the wall, and the children came to listen. ",
        count: 4)

    @Test("kill -9 of a decode worker mid-stream: every client gets the undisturbed text, with no error")
    func decodeWorkerKilled() async throws {
        let cluster = try await ResumeCluster.start()
        defer { cluster.stop() }
        let reference = try await cluster.streamAll(Self.requests)
        for (request, outcome) in zip(Self.requests, reference) {
            #expect(outcome.error == nil && outcome.done, "undisturbed run of \(request.prompt.prefix(30)): \(outcome.error ?? "unfinished")")
            #expect(!outcome.text.isEmpty)
        }

        // Alone, a split seeded request gets what it got among the others.
        let alone = try await cluster.streamAll([Self.requests[3]])
        #expect(alone[0].text == reference[3].text, "a reply does not depend on what else ran")

        let before = try await ClusterLoopbackTests.workerCounts(cluster.base)
        let streams = Self.requests.map { cluster.start($0) }
        // As soon as one stream is under way, the decode worker that took the most of them dies.
        try await waitUntil("a stream to be under way", timeout: .seconds(120)) { streams.contains { $0.snapshot.deltas >= 2 } }
        let after = try await ClusterLoopbackTests.workerCounts(cluster.base)
        let victim = try #require(
            cluster.decodeWorkers.max { a, b in
                (after["\(a.name)/decode"] ?? 0) - (before["\(a.name)/decode"] ?? 0)
                    < (after["\(b.name)/decode"] ?? 0) - (before["\(b.name)/decode"] ?? 0)
            })
        kill(victim.process.process.processIdentifier, SIGKILL)
        let outcomes = try await cluster.finish(streams)
        for (i, outcome) in outcomes.enumerated() {
            #expect(outcome.error == nil, "stream \(i) saw an error: \(outcome.error ?? ""); router log:\n\(cluster.router.standardError.suffix(4000))")
            #expect(outcome.text == reference[i].text, "stream \(i) differs from the undisturbed run")
        }
        let migrations = try await cluster.migrations()
        #expect(migrations.values.reduce(0, +) >= 1, "no request moved: \(migrations); router log:\n\(cluster.router.standardError.suffix(3000))")
        #expect(cluster.router.standardError.contains("resuming after"), "one log line per migration")
    }

    @Test("SIGTERM of a decode worker mid-stream moves its generations with their KV: every client gets the undisturbed text, nothing is computed again")
    func decodeWorkerDrainsByMoving() async throws {
        let cluster = try await ResumeCluster.start()
        defer { cluster.stop() }
        // Long enough replies that the drain lands mid-stream on the worker that has the most of them.
        let requests = Self.requests.map { request in
            var longer = request
            longer.maxTokens = 96
            return longer
        }
        let reference = try await cluster.streamAll(requests)
        for outcome in reference { #expect(outcome.error == nil && outcome.done && !outcome.text.isEmpty) }

        let before = try await ClusterLoopbackTests.workerCounts(cluster.base)
        let streams = requests.map { cluster.start($0) }
        try await waitUntil("a stream to be under way", timeout: .seconds(120)) { streams.contains { $0.snapshot.deltas >= 2 } }
        let after = try await ClusterLoopbackTests.workerCounts(cluster.base)
        let victim = try #require(
            cluster.decodeWorkers.max { a, b in
                (after["\(a.name)/decode"] ?? 0) - (before["\(a.name)/decode"] ?? 0)
                    < (after["\(b.name)/decode"] ?? 0) - (before["\(b.name)/decode"] ?? 0)
            })
        kill(victim.process.process.processIdentifier, SIGTERM)
        let outcomes = try await cluster.finish(streams)
        for (i, outcome) in outcomes.enumerated() {
            #expect(outcome.error == nil, "stream \(i) saw an error: \(outcome.error ?? ""); router log:\n\(cluster.router.standardError.suffix(4000))")
            #expect(outcome.text == reference[i].text, "stream \(i) differs from the undisturbed run")
        }
        #expect(try await victim.process.exitStatus(timeout: .seconds(60)) == 0, "the drained worker exits cleanly")
        let moves = try await cluster.counts(of: "baton_router_moves_total", by: "outcome")
        #expect((moves["moved"] ?? 0) >= 1, "nothing moved: \(moves); router log:\n\(cluster.router.standardError.suffix(3000)); \(victim.name) log:\n\(victim.process.standardError.suffix(3000))")
        #expect(moves["failed"] == nil, "\(moves)")
        // Moved, not resumed: no migration, and no prompt or generated token computed again anywhere.
        #expect(try await cluster.migrations().values.reduce(0, +) == 0)
        #expect((try await cluster.counts(of: "baton_router_migration_recomputed_tokens_total", by: nil)[""] ?? 0) == 0)
        #expect((try await cluster.counts(of: "baton_router_moved_kv_bytes_total", by: nil)[""] ?? 0) > 0)
        // One log line per moved generation, on both sides.
        let routerLines = cluster.router.standardError.split(separator: "\n").filter { $0.contains("moved from \(victim.name) (draining)") }
        let workerLines = victim.process.standardError.split(separator: "\n").filter { $0.contains("moved request") }
        #expect(routerLines.count == moves["moved"] ?? 0)
        #expect(workerLines.count == moves["moved"] ?? 0)
        #expect(victim.process.standardError.contains("drain moved"))
    }

    @Test("SIGTERM of every decode worker at once: nobody can take their generations, so each finishes where it runs, with the undisturbed text")
    func everyDecodeWorkerDrains() async throws {
        let cluster = try await ResumeCluster.start()
        defer { cluster.stop() }
        let requests = Self.requests.map { request in
            var longer = request
            longer.maxTokens = 64
            return longer
        }
        let reference = try await cluster.streamAll(requests)
        for outcome in reference { #expect(outcome.error == nil && outcome.done && !outcome.text.isEmpty) }

        let streams = requests.map { cluster.start($0) }
        try await waitUntil("every stream to be under way", timeout: .seconds(120)) { streams.allSatisfy { $0.snapshot.deltas >= 2 || $0.snapshot.ended } }
        for worker in cluster.decodeWorkers { kill(worker.process.process.processIdentifier, SIGTERM) }
        let outcomes = try await cluster.finish(streams)
        for (i, outcome) in outcomes.enumerated() {
            #expect(outcome.error == nil, "stream \(i) saw an error: \(outcome.error ?? ""); router log:\n\(cluster.router.standardError.suffix(4000))")
            #expect(outcome.text == reference[i].text, "stream \(i) differs from the undisturbed run")
        }
        for worker in cluster.decodeWorkers {
            #expect(try await worker.process.exitStatus(timeout: .seconds(60)) == 0, "\(worker.name) exits cleanly after its drain")
        }
        let moves = try await cluster.counts(of: "baton_router_moves_total", by: "outcome")
        #expect((moves["kept"] ?? 0) >= 1, "\(moves); router log:\n\(cluster.router.standardError.suffix(3000))")
        #expect(moves["failed"] == nil, "\(moves)")
        #expect(try await cluster.migrations().values.reduce(0, +) == 0, "nothing was resumed elsewhere")
        #expect(cluster.decodeWorkers.contains { $0.process.standardError.contains("went on here") })
    }

    @Test("kill -9 of the prefill worker while it ships KV: every client gets the undisturbed text, with no error")
    func prefillWorkerKilled() async throws {
        // With prefix caching the reference run would leave these prompts cached on both workers: sent again, they
        // would be run on the decode worker or ship a block or two, and be done before the kill lands.
        let cluster = try await ResumeCluster.start(prefixCaching: false)
        defer { cluster.stop() }
        // Only split prompts: each goes through the prefill worker.
        let requests = Self.requests.filter { $0.prompt.hasPrefix(Self.longPrompt) }
            + [StreamRequest(prompt: Self.longPrompt + " Who is the main character?", temperature: 0.7, seed: 3)]
        let reference = try await cluster.streamAll(requests)
        for outcome in reference { #expect(outcome.error == nil && outcome.done && !outcome.text.isEmpty) }

        let streams = requests.map { cluster.start($0) }
        // The prompts are queued and prefilled together: the kill lands before, during or after their KV streams.
        try await Task.sleep(for: .milliseconds(150))
        kill(cluster.prefill.process.process.processIdentifier, SIGKILL)
        let outcomes = try await cluster.finish(streams)
        for (i, outcome) in outcomes.enumerated() {
            #expect(outcome.error == nil, "stream \(i) saw an error: \(outcome.error ?? ""); router log:\n\(cluster.router.standardError.suffix(4000))")
            #expect(outcome.text == reference[i].text, "stream \(i) differs from the undisturbed run")
        }
        let migrations = try await cluster.migrations()
        #expect((migrations["prefill_failed"] ?? 0) >= 1, "\(migrations); router log:\n\(cluster.router.standardError.suffix(3000))")
    }
}

/// One chat request of the scenario.
struct StreamRequest: Sendable {
    var prompt: String
    var temperature: Double
    var seed: Int?
    var maxTokens = 48

    var json: String {
        let content = String(decoding: try! JSONSerialization.data(withJSONObject: [prompt], options: []), as: UTF8.self)
            .dropFirst().dropLast()
        let seedField = seed.map { #", "seed": \#($0)"# } ?? ""
        return #"{"model": "smollm2", "stream": true, "max_tokens": \#(maxTokens), "temperature": \#(temperature)\#(seedField), "messages": [{"role": "user", "content": \#(content)}]}"#
    }
}

/// Placement, one prefill worker, two decode workers and the router, each its own `baton` process on loopback
/// with mutual TLS; workers with one thread each.
final class ResumeCluster: @unchecked Sendable {
    struct Member {
        let name: String
        let process: BatonProcess
    }

    let directory: URL
    let placement: BatonProcess
    let prefill: Member
    let decodeWorkers: [Member]
    let router: BatonProcess
    let base: String

    private init(directory: URL, placement: BatonProcess, prefill: Member, decodeWorkers: [Member], router: BatonProcess, base: String) {
        self.directory = directory
        self.placement = placement
        self.prefill = prefill
        self.decodeWorkers = decodeWorkers
        self.router = router
        self.base = base
    }

    /// - Parameter prefixCaching: without it (`--no-prefix-caching` on every worker), a prompt sent again is computed and
    ///   shipped again in full.
    static func start(prefixCaching: Bool = true) async throws -> ResumeCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-resume-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certs = directory.appendingPathComponent("certs").path
        let names = ["prefill-0", "decode-0", "decode-1"]
        let made = try await BatonProcess.run(["certs", "--out", certs, "--nodes", (["placement", "router"] + names).joined(separator: ",")])
        guard made.status == 0 else { throw ProcessFailure("baton certs failed: \(made.error)") }
        let policy = directory.appendingPathComponent("policy.yaml").path
        // The prefill worker must stay the one prefill choice while it lives (no TTFT-based refusals on a busy box).
        try ClusterLoopbackTests.write(policy, """
            slo: {ttft_ms: 600000, tpot_ms: 600000}
            membership: {heartbeat_timeout_seconds: 3}
            resume: {max_migrations: 3}
            """)
        let placementAddress = "127.0.0.1:\(try OpenAIClientTests.freePort())"
        let placement = try BatonProcess([
            "placement", "--config", policy, "--listen", placementAddress, "--state-dir",
            directory.appendingPathComponent("placement").path, "--certs", certs, "--node", "placement",
        ])
        var members: [Member] = []
        for name in names {
            let role = name.hasPrefix("prefill") ? "prefill" : "decode"
            let config = try ClusterLoopbackTests.writeWorkerConfig(in: directory, name: name, role: role)
            members.append(Member(name: name, process: try BatonProcess([
                "worker", "--role", role, "--placement", placementAddress, "--listen", "127.0.0.1:\(try OpenAIClientTests.freePort())",
                "--certs", certs, "--node", name, "--config", config, "--context", "1024", "--threads", "1",
            ] + (prefixCaching ? [] : ["--no-prefix-caching"]))))
        }
        let port = try OpenAIClientTests.freePort()
        let router = try BatonProcess([
            "router", "--placement", placementAddress, "--certs", certs, "--node", "router", "--port", "\(port)",
            "--context", "1024", "--served-model-name", "smollm2",
        ])
        let cluster = ResumeCluster(
            directory: directory, placement: placement, prefill: members[0], decodeWorkers: Array(members[1...]),
            router: router, base: "http://127.0.0.1:\(port)")
        do {
            _ = try await ClusterLoopbackTests.waitForWorkers(count: 3, placement: placementAddress, certs: certs)
            try await router.wait(for: "the router to be ready", timeout: .seconds(60)) { _ in
                (try? ClusterLoopbackTests.syncStatus("http://127.0.0.1:\(port)/health")) == 200
            }
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    func stop() {
        for process in [router, placement, prefill.process] + decodeWorkers.map(\.process) where process.process.isRunning {
            kill(process.process.processIdentifier, SIGKILL)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    func start(_ request: StreamRequest) -> SSEStream {
        SSEStream(url: "\(base)/v1/chat/completions", body: request.json)
    }

    /// Runs every request at once to the end, undisturbed.
    func streamAll(_ requests: [StreamRequest]) async throws -> [SSEStream.Snapshot] {
        try await finish(requests.map { start($0) })
    }

    func finish(_ streams: [SSEStream]) async throws -> [SSEStream.Snapshot] {
        try await waitUntil("every stream to end", timeout: .seconds(180)) { streams.allSatisfy { $0.snapshot.ended } }
        return streams.map(\.snapshot)
    }

    /// `baton_router_migrations_total` by reason.
    func migrations() async throws -> [String: Int] {
        try await counts(of: "baton_router_migrations_total", by: "reason")
    }

    /// The router's counter `metric` summed by the value of `label` (nil: one sum, under "").
    func counts(of metric: String, by label: String?) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in try await HTTP.get("\(base)/metrics").split(separator: "\n")
        where line.hasPrefix(metric + "{") || line.hasPrefix(metric + " ") {
            guard let value = Double(line.split(separator: " ").last ?? "") else { continue }
            var key = ""
            if let label {
                guard let start = line.range(of: "\(label)=\""), let end = line[start.upperBound...].firstIndex(of: "\"")
                else { continue }
                key = String(line[start.upperBound..<end])
            }
            counts[key, default: 0] += Int(value)
        }
        return counts
    }
}

/// An OpenAI chat stream read as it arrives (server-sent events): the text deltas, whether `[DONE]` came, and any
/// in-band error.
final class SSEStream: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    struct Snapshot: Sendable {
        var text = ""
        var deltas = 0
        var done = false
        var error: String?
        var ended = false
    }

    private let lock = NSLock()
    private var state = Snapshot()
    private var pending = Data()
    private var session: URLSession?

    init(url: String, body: String) {
        super.init()
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        request.timeoutInterval = 300
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        self.session = session
        session.dataTask(with: request).resume()
    }

    var snapshot: Snapshot { lock.withLock { state } }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.withLock {
            pending.append(data)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                guard line.hasPrefix("data: ") else { continue }
                let payload = line.dropFirst(6)
                if payload == "[DONE]" {
                    state.done = true
                    continue
                }
                guard let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
                    state.error = "unreadable event: \(payload)"
                    continue
                }
                if let error = object["error"] {
                    state.error = "\(error)"
                    continue
                }
                let choices = object["choices"] as? [[String: Any]] ?? []
                if let delta = choices.first?["delta"] as? [String: Any], let content = delta["content"] as? String,
                    !content.isEmpty
                {
                    state.text += content
                    state.deltas += 1
                }
            }
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        lock.withLock {
            if let error, state.error == nil { state.error = "transport: \(error)" }
            if let status = (task.response as? HTTPURLResponse)?.statusCode, status != 200, state.error == nil {
                state.error = "HTTP \(status)"
            }
            state.ended = true
        }
        session.finishTasksAndInvalidate()
    }
}

/// Polls `condition` every 20 ms; throws after `timeout`.
func waitUntil(_ what: String, timeout: Duration, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw ProcessFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
