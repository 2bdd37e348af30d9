import Foundation

/// A server `bench serve --compare` starts, measures and stops: Baton split into a cluster (`baton up`; also without
/// prefix caching, to measure what the caches save), Baton in one process (`baton serve`), or llama.cpp's server (the `llama-server` binary `Deploy/scripts/build-llamacpp.sh`
/// builds from llama-cpp-python's source distribution, else that package's Python `llama_cpp.server`).
public final class ServePeer: @unchecked Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case batonSplit = "split"
        /// `baton up --no-prefix-caching`: every prompt computed and shipped whole.
        case batonSplitNoCache = "split-no-cache"
        case batonServe = "serve"
        case llamaServer = "llama-server"
    }

    /// How to start a peer: what `--compare` records in the report as the peer's command.
    public struct Plan: Sendable {
        public var name: String
        public var executable: String
        public var arguments: [String]
        public var environment: [String: String]
        public var port: Int

        public var commandLine: [String] {
            environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [executable] + arguments
        }
    }

    /// What every peer gets alike: the same model file, cores and context per request.
    public struct Settings: Sendable {
        public var baton: String
        public var model: String
        /// Engine threads of `baton serve` and llama-server; `baton up` gets `splitThreads`.
        public var threads: Int
        /// Threads of `baton up`'s prefill and decode worker (default: half of `threads` each, so the cluster uses
        /// the same cores as the one-process servers).
        public var splitThreads: (prefill: Int, decode: Int)
        /// Tokens per request (prompt and reply).
        public var context: Int
        /// Requests generating at once: `baton serve --max-batch`, llama-server's `-np` slots.
        public var parallel: Int
        /// Where `baton up` keeps its state and peers write their logs.
        public var workDirectory: String
        /// A llama-server binary; nil looks in build-llamacpp.sh's output, then falls back to Python.
        public var llamaServer: String?
        /// Decode worker processes of `baton up`.
        public var decodeWorkers = 1
        /// KV blocks of each of `baton up`'s workers; nil: their defaults.
        public var kvBlocks: Int?
        /// The placement policy `baton up` runs with (the cached side only: where KV-aware routing keys go); nil:
        /// its default.
        public var splitPolicy: String?

        public init(
            baton: String, model: String, threads: Int, splitThreads: (prefill: Int, decode: Int)? = nil, context: Int = 4096,
            parallel: Int = 8, workDirectory: String, llamaServer: String? = nil
        ) {
            self.baton = baton
            self.model = model
            self.threads = threads
            self.splitThreads = splitThreads ?? (max(1, threads / 2), max(1, threads - threads / 2))
            self.context = context
            self.parallel = parallel
            self.workDirectory = workDirectory
            self.llamaServer = llamaServer
        }
    }

    /// The command that starts `kind` on `port`.
    public static func plan(_ kind: Kind, settings: Settings, port: Int) throws(BenchmarkError) -> Plan {
        let s = settings
        switch kind {
        case .batonServe:
            return Plan(
                name: "baton-serve", executable: s.baton,
                arguments: ["serve", "--model", s.model, "--port", String(port), "--threads", String(s.threads),
                            "--context", String(s.context), "--max-batch", String(s.parallel)],
                environment: [:], port: port)
        case .batonSplit, .batonSplitNoCache:
            let cached = kind == .batonSplit
            let name = cached ? "baton-split" : "baton-split-no-cache"
            return Plan(
                name: name, executable: s.baton,
                arguments: ["up", "--model", s.model, "--port", String(port), "--state-dir", s.workDirectory + "/" + name,
                            "--prefill-threads", String(s.splitThreads.prefill), "--decode-threads", String(s.splitThreads.decode),
                            "--decode-workers", String(s.decodeWorkers), "--context", String(s.context), "--timeout", "600"]
                    + (s.kvBlocks.map { ["--kv-blocks", String($0)] } ?? [])
                    + (cached ? (s.splitPolicy.map { ["--policy", $0] } ?? []) : ["--no-prefix-caching"]),
                environment: [:], port: port)
        case .llamaServer:
            let flags = ["--host", "127.0.0.1", "--port", String(port)]
            if let binary = s.llamaServer ?? builtLlamaServer() {
                guard FileManager.default.isExecutableFile(atPath: binary) else {
                    throw BenchmarkError(.peerFailed, "llama-server \(binary) is not an executable file")
                }
                // -c is shared by the slots: each gets `context`. Greedy means greedy: no repeat penalty. --metrics feeds
                // the busy timeline.
                return Plan(
                    name: "llama-server", executable: binary,
                    arguments: ["-m", s.model, "-t", String(s.threads), "-tb", String(s.threads), "-np", String(s.parallel),
                                "-c", String(s.context * s.parallel), "--repeat-penalty", "1.0", "--metrics"] + flags,
                    environment: [:], port: port)
            }
            let python = venv() + "/bin/python"
            guard pythonServerWorks(python) else {
                throw BenchmarkError(
                    .peerFailed,
                    "no llama.cpp server: neither a llama-server binary in \(llamaCppDirectory())/<isa>/ nor Python's llama_cpp.server "
                        + "in \(venv()); run `bash Deploy/scripts/build-llamacpp.sh` (or pass --llama-server PATH)")
            }
            var environment: [String: String] = [:]
            if let library = bestBuild() { environment["LLAMA_CPP_LIB_PATH"] = library }
            return Plan(
                name: "llama-cpp-python", executable: python,
                arguments: ["-m", "llama_cpp.server", "--model", s.model, "--n_threads", String(s.threads),
                            "--n_threads_batch", String(s.threads), "--n_ctx", String(s.context)] + flags,
                environment: environment, port: port)
        }
    }

    static func llamaCppDirectory() -> String {
        ProcessInfo.processInfo.environment["BATON_LLAMACPP_DIR"] ?? NSHomeDirectory() + "/.cache/baton/llama.cpp"
    }

    static func venv() -> String {
        ProcessInfo.processInfo.environment["BATON_VENV"] ?? NSHomeDirectory() + "/.cache/baton/venv"
    }

    /// build-llamacpp.sh's build for this CPU's best path (avx512 where the CPU has it, else avx2), if present.
    static func bestBuild() -> String? {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? []
        let isas = flags.contains("avx512f") ? ["avx512", "avx2"] : ["avx2"]
        return isas.map { llamaCppDirectory() + "/" + $0 }.first { FileManager.default.fileExists(atPath: $0 + "/libllama.so") }
    }

    static func builtLlamaServer() -> String? {
        guard let build = bestBuild() else { return nil }
        let binary = build + "/llama-server"
        return FileManager.default.isExecutableFile(atPath: binary) ? binary : nil
    }

    static func pythonServerWorks(_ python: String) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: python) else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", "import llama_cpp.server.app"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        if let library = bestBuild() { environment["LLAMA_CPP_LIB_PATH"] = library }
        process.environment = environment
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    public let plan: Plan
    public let logPath: String
    private let process: Process

    private init(plan: Plan, logPath: String, process: Process) {
        self.plan = plan
        self.logPath = logPath
        self.process = process
    }

    /// Starts the peer, its output going to `NAME.log` in the work directory.
    public static func start(_ plan: Plan, workDirectory: String) throws(BenchmarkError) -> ServePeer {
        let logPath = workDirectory + "/\(plan.name).log"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: plan.executable)
        process.arguments = plan.arguments
        process.environment = ProcessInfo.processInfo.environment.merging(plan.environment) { $1 }
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            process.standardOutput = log
            process.standardError = log
            try process.run()
        } catch {
            throw BenchmarkError(.peerFailed, "cannot start \(plan.name) (\(plan.commandLine.joined(separator: " ")))", cause: error)
        }
        return ServePeer(plan: plan, logPath: logPath, process: process)
    }

    /// Waits until `GET /health` answers 200; fails early if the process exits.
    public func waitUntilReady(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw BenchmarkError(
                    .peerFailed, "\(plan.name) exited with status \(process.terminationStatus) before it was ready; log: \(logPath)\n"
                        + lastLines())
            }
            let answer = try? await HTTPConnection.with(host: "127.0.0.1", port: plan.port) {
                try await $0.exchange(method: .GET, path: "/health", headers: [], body: nil, timeout: .seconds(5), onLine: nil)
            }
            if answer?.0 == 200 { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw BenchmarkError(.peerFailed, "\(plan.name) was not ready within \(timeout); log: \(logPath)\n" + lastLines())
    }

    private func lastLines() -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(8).joined(separator: "\n")
    }

    /// SIGTERM (each peer's graceful shutdown; `baton up` takes its processes down with it), SIGKILL after `grace`.
    public func stop(grace: Duration = .seconds(30)) async {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(200)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
