import ArgumentParser
import Dispatch
import Foundation
import KVTransport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `baton up`: the whole cluster on one box — placement service, one prefill worker, one decode worker and
/// the router, each its own process, talking mutual TLS with certificates made on first use.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run a whole cluster on this box: placement, a prefill worker, a decode worker and the router.",
        discussion: """
            Prints the API's base URL once a request can be served, then runs until Ctrl-C, which stops every
            process it started (workers finish what they are doing first). State lives in --state-dir:
            certificates (certs/), the placement policy (policy.yaml, edit it to tune placement: it reloads on
            save) and the membership log (placement/).
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

    @Option(name: .customLong("context"), help: "Tokens per request, prompt and reply.")
    var contextLength = 4096

    @Option(name: .customLong("placement-port"), help: "Port of the placement service (0: any free port).")
    var placementPort = 0

    @Option(help: "Seconds to wait for the cluster to become ready.")
    var timeout: Double = 120

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, got \(port)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    static let nodes = ["placement", "router", "prefill-0", "decode-0"]

    func run() async throws {
        let model = try modelOptions.resolvedPath()
        let state = stateDirectory ?? (NSHomeDirectory() + "/.cache/baton/up")
        let certs = state + "/certs"
        try Self.ensureCertificates(in: certs)
        let policyFile = try policy ?? Self.ensureDefaultPolicy(in: state)
        guard FileManager.default.fileExists(atPath: policyFile) else {
            throw ValidationError("--policy \(policyFile) does not exist")
        }
        let executable = try Self.executablePath()
        let placementAt = placementPort == 0 ? try Self.freePort() : placementPort
        let prefillPort = try Self.freePort(), decodePort = try Self.freePort()
        let placement = "127.0.0.1:\(placementAt)"
        let common = ["--certs", certs]
        let threadFlags = threads.map { ["--threads", String($0)] } ?? []
        let specs: [ChildSpec] = [
            ChildSpec(name: "placement", arguments: [
                "placement", "--config", policyFile, "--listen", placement, "--state-dir", state + "/placement",
                "--node", "placement"] + common),
            ChildSpec(name: "prefill-0", arguments: [
                "worker", "--role", "prefill", "--placement", placement, "--listen", "127.0.0.1:\(prefillPort)",
                "--node", "prefill-0", "--model", model, "--context", String(contextLength)] + common + threadFlags),
            ChildSpec(name: "decode-0", arguments: [
                "worker", "--role", "decode", "--placement", placement, "--listen", "127.0.0.1:\(decodePort)",
                "--node", "decode-0", "--model", model, "--context", String(contextLength)] + common + threadFlags),
            ChildSpec(name: "router", arguments: [
                "router", "--placement", placement, "--host", host, "--port", String(port), "--node", "router",
                "--model", model, "--context", String(contextLength)] + common
                + (try chatTemplate.resolvedFile().map { ["--chat-template", $0] } ?? [])),
        ]

        let supervisor = Supervisor(executable: executable)
        // Ctrl-C and SIGTERM stop the children in order; the handlers only set a flag the loop below reads.
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] { signal(signalNumber, SIG_IGN) }
        let signalSources = [SIGINT, SIGTERM, SIGHUP].map { number -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { supervisor.requestStop(reason: "received signal \(number)") }
            source.resume()
            return source
        }
        defer { signalSources.forEach { $0.cancel() } }

        for spec in specs {
            try supervisor.start(spec)
        }
        let baseURL = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
        let ready = await Self.waitForHealth(url: baseURL + "/health", timeout: timeout, supervisor: supervisor)
        if ready {
            // One line on stdout, written at once (a pipe would otherwise hold it back).
            FileHandle.standardOutput.write(Data("\(baseURL)/v1\n".utf8))
            FileHandle.standardError.write(Data("""
                [up] Baton is up: \(baseURL)/v1 (model \(URL(fileURLWithPath: model).lastPathComponent))
                [up] try: curl \(baseURL)/v1/chat/completions -H 'Content-Type: application/json' \\
                [up]        -d '{"model": "\(URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent)", "messages": [{"role": "user", "content": "Hello!"}]}'
                [up] cluster status: \(executable) cluster status --placement \(placement) --certs \(certs) --node router
                [up] policy: \(policyFile) (reloads when saved) · Ctrl-C stops everything

                """.utf8))
        } else if !supervisor.stopping {
            supervisor.requestStop(reason: "the cluster did not become ready within \(timeout) s")
        }
        let failed = await supervisor.waitUntilStopped()
        if failed || !ready { throw ExitCode(1) }
    }

    // MARK: - Set-up

    /// Certificates for every node, made once (a CA and one certificate per process).
    static func ensureCertificates(in directory: String) throws {
        let manager = FileManager.default
        let complete = (["ca"] + nodes).allSatisfy { manager.fileExists(atPath: "\(directory)/\($0).pem") }
            && nodes.allSatisfy { manager.fileExists(atPath: "\(directory)/\($0)-key.pem") }
        if complete { return }
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = try CertsCommand.makeCluster(in: URL(fileURLWithPath: directory, isDirectory: true), authorityName: "Baton up CA", nodes: nodes)
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

    /// Polls `url` until it answers 200, a child dies, a stop is requested, or `timeout` passes.
    static func waitForHealth(url: String, timeout: Double, supervisor: Supervisor) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 2
        let session = URLSession(configuration: .ephemeral)
        while ContinuousClock.now < deadline, !supervisor.stopping {
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

/// Starts the children in their own process group (so Ctrl-C reaches only `baton up`, which then stops them
/// in order), notices when one dies, and stops the rest.
final class Supervisor: @unchecked Sendable {
    private struct Child {
        var spec: ChildSpec
        var pid: pid_t
        var exited = false
        var status: Int32 = 0
    }

    private let executable: String
    private let lock = NSLock()
    private var children: [Child] = []
    private var stopReason: String?
    private var failed = false

    init(executable: String) {
        self.executable = executable
    }

    var stopping: Bool { lock.withLock { stopReason != nil } }

    func start(_ spec: ChildSpec) throws {
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
            throw ValidationError("could not start \(spec.name): \(String(cString: strerror(result)))")
        }
        lock.withLock { children.append(Child(spec: spec, pid: pid)) }
        FileHandle.standardError.write(Data("[up] started \(spec.name) (pid \(pid))\n".utf8))
        let child = pid
        let watcher = Thread { [self] in watch(pid: child, name: spec.name) }
        watcher.name = "baton.up.\(spec.name)"
        watcher.start()
    }

    private func watch(pid: pid_t, name: String) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let unexpected: Bool = lock.withLock {
            if let index = children.firstIndex(where: { $0.pid == pid }) {
                children[index].exited = true
                children[index].status = status
            }
            return stopReason == nil
        }
        if unexpected {
            lock.withLock { failed = true }
            requestStop(reason: "\(name) exited unexpectedly (\(Self.describe(status)))")
        }
    }

    func requestStop(reason: String) {
        let first: Bool = lock.withLock {
            guard stopReason == nil else { return false }
            stopReason = reason
            return true
        }
        guard first else { return }
        FileHandle.standardError.write(Data("[up] stopping: \(reason)\n".utf8))
        // Router first (no new requests), then workers (they drain), then placement.
        let order = ["router", "prefill-0", "decode-0", "placement"]
        let thread = Thread { [self] in
            for name in order {
                guard let pid = lock.withLock({ children.first { $0.spec.name == name && !$0.exited }?.pid }) else { continue }
                kill(pid, SIGTERM)
                let deadline = Date().addingTimeInterval(40)
                while Date() < deadline, lock.withLock({ !(children.first { $0.pid == pid }?.exited ?? true) }) {
                    Thread.sleep(forTimeInterval: 0.05)
                }
                if lock.withLock({ !(children.first { $0.pid == pid }?.exited ?? true) }) {
                    FileHandle.standardError.write(Data("[up] \(name) did not stop within 40 s; killing it\n".utf8))
                    kill(pid, SIGKILL)
                }
            }
        }
        thread.start()
    }

    /// Waits until a stop was requested and every child has exited; returns whether something failed.
    func waitUntilStopped() async -> Bool {
        while true {
            let done: Bool = lock.withLock { stopReason != nil && children.allSatisfy(\.exited) }
            if done { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        let summary = lock.withLock { children.map { "\($0.spec.name): \(Self.describe($0.status))" } }
        FileHandle.standardError.write(Data("[up] stopped (\(summary.joined(separator: ", ")))\n".utf8))
        return lock.withLock { failed }
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
