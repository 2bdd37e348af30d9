import ArgumentParser
import Dispatch
import Foundation
import Logging
import RPC
import ServiceLifecycle
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `baton up`: the whole cluster on one box — placement service, prefill and decode workers and the router, each
/// its own process, talking mutual TLS with certificates made on first use, supervised: a process that dies is
/// restarted (with backoff) while the rest keeps serving.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run a whole cluster on this box: placement, prefill and decode workers and the router.",
        discussion: """
            Prints the API's base URL once a request can be served, then runs until Ctrl-C, which stops every \
            process it started (workers finish what they are doing first). A process that exits on its own is \
            restarted after a backoff (0.5 s, doubling to 30 s; reset once it has run for a minute). State lives \
            in --state-dir: certificates (certs/), the placement policy (policy.yaml, edit it to tune placement: it \
            reloads on save) and the membership log (placement/).
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var chatTemplate: ChatTemplateOptions

    @Option(help: "Port of the OpenAI API (http://127.0.0.1:PORT/v1).")
    var port = 8080

    @Option(help: "Address the API listens on.")
    var host = "127.0.0.1"

    @Option(name: .customLong("state-dir"), help: "Certificates, policy and membership log (default ~/.cache/baton/up).")
    var stateDirectory: String?

    @Option(help: "Placement policy file (default: STATE-DIR/policy.yaml, written on first use; it splits every prompt).")
    var policy: String?

    @Option(help: "Engine threads per worker (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("prefill-workers"), help: "Prefill worker processes.")
    var prefillWorkers = 1

    @Option(name: .customLong("decode-workers"), help: "Decode worker processes.")
    var decodeWorkers = 1

    @Option(name: .customLong("prefill-threads"), help: "Engine threads of each prefill worker (default: --threads).")
    var prefillThreads: Int?

    @Option(name: .customLong("decode-threads"), help: "Engine threads of each decode worker (default: --threads).")
    var decodeThreads: Int?

    @Option(name: .customLong("context"), help: "Tokens per request, prompt and reply.")
    var contextLength = 4096

    @Option(name: .customLong("kv-blocks"), help: "KV cache blocks of every worker, 16 tokens each (default: each worker's own; see baton worker --help). The prefixes a worker keeps for reuse live in them.")
    var kvBlocks: Int?

    @Option(name: .customLong("placement-port"), help: "Port of the placement service (0: any free port).")
    var placementPort = 0

    @Option(help: "Seconds to wait for the cluster to become ready.")
    var timeout: Double = 120

    @Flag(name: .customLong("no-prefix-caching"), help: "Workers compute every prompt from its first token (no reuse of cached prefixes).")
    var noPrefixCaching = false

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, got \(port)") }
        for (flag, value) in [("--threads", threads), ("--prefill-threads", prefillThreads), ("--decode-threads", decodeThreads)] {
            if let value, value < 1 { throw ValidationError("\(flag) must be at least 1") }
        }
        guard (0...16).contains(prefillWorkers) else { throw ValidationError("--prefill-workers must be in 0...16") }
        guard (1...16).contains(decodeWorkers) else { throw ValidationError("--decode-workers must be in 1...16") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let kvBlocks, kvBlocks < 1 { throw ValidationError("--kv-blocks must be at least 1") }
    }

    /// Every process's node name (and certificate), placement first.
    static func nodes(prefill: Int, decode: Int) -> [String] {
        ["placement", "router"] + (0..<prefill).map { "prefill-\($0)" } + (0..<decode).map { "decode-\($0)" }
    }

    func run() async throws {
        let model = try modelOptions.resolvedPath()
        let state = stateDirectory ?? (NSHomeDirectory() + "/.cache/baton/up")
        let certs = state + "/certs"
        try Self.ensureCertificates(in: certs, nodes: Self.nodes(prefill: prefillWorkers, decode: decodeWorkers))
        let policyFile = try policy ?? Self.ensureDefaultPolicy(in: state)
        guard FileManager.default.fileExists(atPath: policyFile) else {
            throw ValidationError("--policy \(policyFile) does not exist")
        }
        let executable = try Self.executablePath()
        let placementAt = placementPort == 0 ? try Self.freePort() : placementPort
        let placement = "127.0.0.1:\(placementAt)"
        let common = ["--certs", certs]
        func worker(_ role: String, _ index: Int, threads: Int?) throws -> ChildSpec {
            let name = "\(role)-\(index)"
            return ChildSpec(name: name, arguments: [
                "worker", "--role", role, "--placement", placement, "--listen", "127.0.0.1:\(try Self.freePort())",
                "--node", name, "--model", model, "--context", String(contextLength)]
                + common + (threads.map { ["--threads", String($0)] } ?? []) + (kvBlocks.map { ["--kv-blocks", String($0)] } ?? [])
                + (noPrefixCaching ? ["--no-prefix-caching"] : []))
        }
        var specs: [ChildSpec] = [
            ChildSpec(name: "placement", arguments: [
                "placement", "--config", policyFile, "--listen", placement, "--state-dir", state + "/placement",
                "--node", "placement"] + common)
        ]
        for index in 0..<prefillWorkers { specs.append(try worker("prefill", index, threads: prefillThreads ?? threads)) }
        for index in 0..<decodeWorkers { specs.append(try worker("decode", index, threads: decodeThreads ?? threads)) }
        specs.append(ChildSpec(name: "router", arguments: [
            "router", "--placement", placement, "--host", host, "--port", String(port), "--node", "router",
            "--model", model, "--context", String(contextLength)] + common
            + (try chatTemplate.resolvedFile().map { ["--chat-template", $0] } ?? [])))

        var logger = Logger(label: "baton.up") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let supervisor = Supervisor(executable: executable, children: specs)
        let group = ServiceGroup(services: [supervisor], gracefulShutdownSignals: [.sigterm, .sigint, .sighup], logger: logger)
        let baseURL = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
        let timeout = self.timeout
        let announce = Task {
            guard await Self.waitForHealth(url: baseURL + "/health", timeout: timeout) else {
                Supervisor.say("the cluster did not become ready within \(timeout) s; stopping")
                await group.triggerGracefulShutdown()
                return false
            }
            // One line on stdout, written at once (a pipe would otherwise hold it back).
            FileHandle.standardOutput.write(Data("\(baseURL)/v1\n".utf8))
            let name = URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
            FileHandle.standardError.write(Data("""
                [up] Baton is up: \(baseURL)/v1 (model \(name))
                [up] try: curl \(baseURL)/v1/chat/completions -H 'Content-Type: application/json' \\
                [up]        -d '{"model": "\(name)", "messages": [{"role": "user", "content": "Hello!"}]}'
                [up] cluster status: \(executable) cluster status --placement \(placement) --certs \(certs) --node router
                [up] policy: \(policyFile) (reloads when saved) · Ctrl-C stops everything

                """.utf8))
            return true
        }
        try await group.run()
        announce.cancel()
        if !(await announce.value) { throw ExitCode(1) }
    }

    // MARK: - Set-up

    /// Role-bound certificates for every node, made once (a CA and one certificate per process, each naming its
    /// node and role; all again when one is missing or was made before certificates carried roles).
    static func ensureCertificates(in directory: String, nodes: [String]) throws {
        let manager = FileManager.default
        let identities = try CertsCommand.parseNodes(nodes.joined(separator: ","))
        let complete = manager.fileExists(atPath: "\(directory)/ca.pem")
            && identities.allSatisfy { node in
                manager.fileExists(atPath: "\(directory)/\(node.name)-key.pem")
                    && (try? String(contentsOfFile: "\(directory)/\(node.name).pem", encoding: .utf8))
                        .flatMap { try? NodeIdentity(pem: $0) } == node
            }
        if complete { return }
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = try CertsCommand.makeCluster(
            in: URL(fileURLWithPath: directory, isDirectory: true), authorityName: "Baton up CA", nodes: identities)
        FileHandle.standardError.write(Data("[up] made a cluster CA and certificates for \(nodes.joined(separator: ", ")) in \(directory)\n".utf8))
    }

    /// The policy `baton up` uses unless given one: the defaults, except that every prompt is split
    /// between the two workers (the point of running a cluster), written once so the user can edit it.
    static func ensureDefaultPolicy(in state: String) throws -> String {
        let path = state + "/policy.yaml"
        if FileManager.default.fileExists(atPath: path) { return path }
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let text = """
            # Placement policy of `baton up` (every key and its default: Deploy/config/policy.yaml in the
            # Baton repository). Saved edits take effect at once, without dropping requests.

            disaggregation:
              min_prompt_tokens: 0          # split every prompt: prefill on prefill-0, decode on decode-0.
                                            # Raise it (e.g. 64) to run short prompts on the decode worker alone.
              fallback_to_decode_only: true # prefill worker gone → run on the decode worker rather than fail

            slo:
              max_queue_depth: 2            # at most two prompts wait at each worker; the rest wait at the router,
                                            # so each prompt's prefill deadline is not spent queueing behind others

            membership:
              heartbeat_timeout_seconds: 5

            """
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw ValidationError("cannot write \(path)")
        }
        return path
    }

    static func executablePath() throws -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        let argument = CommandLine.arguments[0]
        guard argument.contains("/") else { throw ValidationError("cannot find the baton executable's path") }
        return URL(fileURLWithPath: argument).standardizedFileURL.path
    }

    /// A TCP port free right now on 127.0.0.1.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ValidationError("cannot bind a socket to find a free port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls `url` until it answers 200 or `timeout` passes (or the task is cancelled).
    static func waitForHealth(url: String, timeout: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 2
        let session = URLSession(configuration: .ephemeral)
        while ContinuousClock.now < deadline, !Task.isCancelled {
            if let (_, response) = try? await session.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                return true
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return false
    }
}

/// One process `baton up` runs.
struct ChildSpec: Sendable {
    var name: String
    var arguments: [String]
}

/// Runs `baton up`'s processes as a `Service`: starts each in its own process group (so Ctrl-C reaches only
/// `baton up`, which then stops them in order), restarts one that exits on its own after a backoff, and at graceful
/// shutdown stops them — routers first (no new requests), then workers (they drain), then placement.
final class Supervisor: Service, @unchecked Sendable {
    private struct Child {
        var spec: ChildSpec
        var pid: pid_t?
        var restarts = 0
        var backoff = 0.5
    }

    private let executable: String
    private let lock = NSLock()
    private var children: [Child]
    private var stopping = false

    init(executable: String, children: [ChildSpec]) {
        self.executable = executable
        self.children = children.map { Child(spec: $0) }
    }

    /// One "[up] …" line on standard error (standard output carries only the base URL).
    static func say(_ message: String) {
        FileHandle.standardError.write(Data("[up] \(message)\n".utf8))
    }

    func run() async throws {
        for index in lock.withLock({ children.indices }) { try launch(index) }
        try? await gracefulShutdown()
        lock.withLock { stopping = true }
        Self.say("stopping every process")
        await stopAll()
    }

    /// Starts child `index` and a thread that waits for it and restarts it unless `baton up` is stopping.
    private func launch(_ index: Int) throws {
        let spec = lock.withLock { children[index].spec }
        let pid = try spawn(spec)
        lock.withLock { children[index].pid = pid }
        Self.say("started \(spec.name) (pid \(pid))")
        let watcher = Thread { [self] in
            let started = Date()
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            let (stop, delay): (Bool, Double) = lock.withLock {
                children[index].pid = nil
                if Date().timeIntervalSince(started) > 60 { children[index].backoff = 0.5 }
                let delay = children[index].backoff
                guard !stopping else { return (true, delay) }
                children[index].backoff = min(delay * 2, 30)
                children[index].restarts += 1
                return (false, delay)
            }
            guard !stop else { return }
            Self.say("\(spec.name) exited unexpectedly (\(Self.describe(status))); restarting it in \(delay) s")
            Thread.sleep(forTimeInterval: delay)
            guard !lock.withLock({ stopping }) else { return }
            do { try launch(index) } catch { Self.say("could not restart \(spec.name): \(error)") }
        }
        watcher.name = "baton.up.\(spec.name)"
        watcher.start()
    }

    private func spawn(_ spec: ChildSpec) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Children log on stderr; their stdout (ready lines) goes to our stderr so ours stays the URL alone.
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        var environment = ProcessInfo.processInfo.environment
        environment[ParentWatch.environmentKey] = String(getpid())
        let argv = [executable] + spec.arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let result = withCStrings(argv) { cArguments in
            withCStrings(envp) { cEnvironment in
                posix_spawn(&pid, executable, &actions, &attributes, cArguments, cEnvironment)
            }
        }
        guard result == 0 else {
            throw CommandFailure("could not start \(spec.name): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// SIGTERM to each child in order, waiting up to 40 s for each before SIGKILL.
    private func stopAll() async {
        let order = ["router", "prefill", "decode", "placement"]
        let specs = lock.withLock { children.map(\.spec.name) }
        for prefix in order {
            for name in specs where name.hasPrefix(prefix) {
                guard let pid = lock.withLock({ children.first { $0.spec.name == name }?.pid }) else { continue }
                kill(pid, SIGTERM)
                let deadline = ContinuousClock.now + .seconds(40)
                while ContinuousClock.now < deadline, lock.withLock({ children.first { $0.spec.name == name }?.pid != nil }) {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                if lock.withLock({ children.first { $0.spec.name == name }?.pid != nil }) {
                    Self.say("\(name) did not stop within 40 s; killing it")
                    kill(pid, SIGKILL)
                }
            }
        }
        let summary = lock.withLock { children.map { "\($0.spec.name): \($0.restarts) restart\($0.restarts == 1 ? "" : "s")" } }
        Self.say("stopped (\(summary.joined(separator: ", ")))")
    }

    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exit \((status >> 8) & 0xff)" }
        return "signal \(signal)"
    }
}

/// Lends `strings` as a NULL-terminated C array.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
