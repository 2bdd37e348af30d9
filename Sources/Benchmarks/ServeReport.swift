import Foundation

/// Everything a `bench serve` run was asked to do, written into its JSON so that the run can be repeated.
public struct ServeRunDescription: Codable, Sendable, Equatable {
    /// Synthetic workload, when there was one.
    public var preset: ServeWorkload.Preset?
    /// Trace file, when the workload came from one.
    public var trace: String?
    public var requests: Int
    /// The levels in order, as `ServeBenchmark.LevelSpec` prints them ("concurrency 4", "rate 2/s", "trace").
    public var levels: [String]
    public var seed: UInt64
    public var temperature: Double
    public var slo: ServeSLO?
    public var timeoutSeconds: Double
    /// The command line that ran it.
    public var commandLine: [String]
    public var startedAt: String
    /// CPU model, cores and the 1-minute load average when the run started (a loaded machine shows here).
    public var machine: Machine

    public struct Machine: Codable, Sendable, Equatable {
        public var cpu: String
        public var cores: Int
        public var loadAverage: Double?

        enum CodingKeys: String, CodingKey {
            case cpu, cores, loadAverage = "load_average"
        }

        /// This machine, now.
        public static func current() -> Machine {
            let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            let name = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
                .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
            let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.flatMap { Double($0) }
            return Machine(cpu: name, cores: ProcessInfo.processInfo.activeProcessorCount, loadAverage: load)
        }
    }

    public init(
        preset: ServeWorkload.Preset?, trace: String?, requests: Int, levels: [ServeBenchmark.LevelSpec], seed: UInt64,
        temperature: Double, slo: ServeSLO?, timeoutSeconds: Double, commandLine: [String] = CommandLine.arguments,
        startedAt: Date = Date(), machine: Machine = .current()
    ) {
        self.preset = preset
        self.trace = trace
        self.requests = requests
        self.levels = levels.map(\.description)
        self.seed = seed
        self.temperature = temperature
        self.slo = slo
        self.timeoutSeconds = timeoutSeconds
        self.commandLine = commandLine
        self.startedAt = ISO8601DateFormatter().string(from: startedAt)
        self.machine = machine
    }

    enum CodingKeys: String, CodingKey {
        case preset, trace, requests, levels, seed, temperature, slo, timeoutSeconds = "timeout_s"
        case commandLine = "command_line", startedAt = "started_at", machine
    }
}

/// The JSON `bench serve` writes: the configuration, then per system (one for a plain run, several with
/// `--compare`) how it was started and what each level measured, and the ratios between systems per level.
public struct ServeReport: Codable, Sendable, Equatable {
    public struct SystemRun: Codable, Sendable, Equatable {
        /// `baton-split`, `baton-serve`, `llama-server`, `llama-cpp-python`, or `server` for a plain run.
        public var name: String
        /// How it was started (empty when it was already running); the peer's flags are here.
        public var command: [String]
        public var url: String
        /// The `model` sent in requests.
        public var model: String
        public var levels: [ServeBenchmark.Level]

        public init(name: String, command: [String], url: String, model: String, levels: [ServeBenchmark.Level]) {
            self.name = name
            self.command = command
            self.url = url
            self.model = model
            self.levels = levels
        }
    }

    /// One system against the reference system at one level: each figure's ratio (system / reference).
    public struct Ratio: Codable, Sendable, Equatable {
        public var level: String
        public var system: String
        public var versus: String
        public var outputTokensPerSecond: Double?
        public var goodput: Double?
        public var ttftP50: Double?
        public var itlP50: Double?
        public var e2eP50: Double?
        /// KV bytes moved per request (systems that report it).
        public var kvBytesPerRequest: Double?
        /// Turn by turn, for a workload of conversations.
        public var turns: [TurnRatio]?

        enum CodingKeys: String, CodingKey {
            case level, system, versus, outputTokensPerSecond = "output_tokens_per_second", goodput
            case ttftP50 = "ttft_p50", itlP50 = "itl_p50", e2eP50 = "e2e_p50", kvBytesPerRequest = "kv_bytes_per_request"
            case turns
        }
    }

    /// One turn's figures of a system against the reference's (system / reference).
    public struct TurnRatio: Codable, Sendable, Equatable {
        public var turn: Int
        public var ttftP50: Double?
        public var ttftP99: Double?
        public var goodput: Double?
        public var kvBytesPerRequest: Double?
        public var kvBytesPerTransfer: Double?

        enum CodingKeys: String, CodingKey {
            case turn, ttftP50 = "ttft_p50", ttftP99 = "ttft_p99", goodput, kvBytesPerRequest = "kv_bytes_per_request"
            case kvBytesPerTransfer = "kv_bytes_per_transfer"
        }
    }

    public var configuration: ServeRunDescription
    public var systems: [SystemRun]
    public var ratios: [Ratio]

    public init(configuration: ServeRunDescription, systems: [SystemRun]) {
        self.configuration = configuration
        self.systems = systems
        ratios = Self.ratios(systems)
    }

    /// Every system against the last one (with `--compare`, llama-server when it ran), level by level.
    static func ratios(_ systems: [SystemRun]) -> [Ratio] {
        guard systems.count > 1, let reference = systems.last else { return [] }
        func ratio(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b, b > 0 else { return nil }
            return a / b
        }
        var ratios: [Ratio] = []
        for system in systems.dropLast() {
            for (level, base) in zip(system.levels, reference.levels) {
                let (s, r) = (level.summary, base.summary)
                ratios.append(Ratio(
                    level: level.spec.description, system: system.name, versus: reference.name,
                    outputTokensPerSecond: ratio(s.outputTokensPerSecond, r.outputTokensPerSecond), goodput: ratio(s.goodput, r.goodput),
                    ttftP50: ratio(s.succeeded > 0 ? s.ttftMs.p50 : nil, r.ttftMs.p50),
                    itlP50: ratio(s.succeeded > 0 ? s.itlMs.p50 : nil, r.itlMs.p50),
                    e2eP50: ratio(s.succeeded > 0 ? s.e2eMs.p50 : nil, r.e2eMs.p50),
                    kvBytesPerRequest: ratio(s.kvBytesPerRequest, r.kvBytesPerRequest),
                    turns: s.turns.map { turns in
                        turns.compactMap { t in
                            guard let b = r.turns?.first(where: { $0.turn == t.turn }) else { return nil }
                            return TurnRatio(
                                turn: t.turn, ttftP50: ratio(t.succeeded > 0 ? t.ttftMs.p50 : nil, b.ttftMs.p50),
                                ttftP99: ratio(t.succeeded > 0 ? t.ttftMs.p99 : nil, b.ttftMs.p99), goodput: ratio(t.goodput, b.goodput),
                                kvBytesPerRequest: ratio(t.kvBytesPerRequest, b.kvBytesPerRequest),
                                kvBytesPerTransfer: ratio(t.kvBytesPerTransfer, b.kvBytesPerTransfer))
                        }
                    }))
            }
        }
        return ratios
    }

    /// The highest level (by request rate) whose SLO attainment is at least `target` (DistServe's goodput: the
    /// highest rate served with ≥ 90 % of requests meeting the SLO); nil if none is.
    public static func maxRate(_ levels: [ServeBenchmark.Level], attaining target: Double = 0.9) -> Double? {
        levels.compactMap { level in
            guard let rate = level.rate, let attainment = level.summary.sloAttainment, attainment >= target else { return nil }
            return rate
        }.max()
    }

    /// JSON with sorted keys, one line.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
