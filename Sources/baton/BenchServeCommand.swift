import ArgumentParser
import Benchmarks
import Foundation
import GGUF

/// `baton bench serve`: load against a running OpenAI-compatible server, or, with `--compare`, against Baton split,
/// Baton in one process and llama.cpp's llama-server started here on the same model, cores and workload.
struct BenchServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serving benchmark: streaming chat completions at a sweep of loads, with goodput under an SLO.",
        discussion: """
            Workload: --preset short-chat (100 words in, 64 tokens out), long-prompt (2000 in, 128 out) or multi-turn \
            (6-turn conversations over a shared 500-word system prompt, 100 words a turn, 64-token replies, history \
            resent, conversations interleaved; --requests 192 makes 32 conversations), or --prompt-words/--max-tokens, \
            or --trace FILE.jsonl (one request a \
            line: timestamp in ms, input_length or text, output_length, optional conversation_id and turn; Mooncake's \
            field names). Load: --concurrency 1,2,4 (closed loop), --rate 0.5,1,2 (Poisson arrivals, seeded by --seed), \
            or, with --trace alone, the trace's own timestamps (--trace-speed scales them).
            Per level: TTFT, inter-token latency (ITL, every gap between streamed tokens), TPOT and end-to-end \
            p50/p90/p99 in ms, output tokens/s and, with --slo ttft=2s,itl=100ms, goodput (requests/s that met every \
            bound; itl bounds each request's mean gap). --json prints the report (configuration, seeds, every request) \
            on the last line; --out DIR writes report.json, report.html and SVG plots (PNG too with rsvg-convert).
            --compare starts baton up, baton serve and llama-server (--systems picks; split-no-cache is baton up \
            without prefix caching) on --gguf with the same --threads, runs every level on each in turn (the order \
            alternating from level to level) and reports ratios against the last system. A workload of conversations \
            is reported turn by turn too, with the KV bytes a cluster shipped per request.
            Example: baton bench serve --compare --preset short-chat --rate 0.5,1,2 --requests 24 --slo ttft=2s,itl=100ms --out bench-report
            Prefix caching across the split: baton bench serve --compare --systems split,split-no-cache --decode-workers 2 \
            --preset multi-turn --requests 192 --concurrency 8 --temperature 0 --slo ttft=2s
            """)

    @Option(help: "Base URL of the server (http://HOST:PORT, with or without /v1). Not with --compare.")
    var url = "http://127.0.0.1:8080"

    @Option(help: "Comma-separated numbers of concurrent clients (closed loop; the default load).")
    var concurrency: String?

    @Option(help: "Comma-separated request rates per second: Poisson arrivals (open loop).")
    var rate: String?

    @OptionGroup var workloadOptions: WorkloadOptions

    @Option(help: "Requests per level (synthetic workloads).")
    var requests = 16

    @Option(help: "Sampling temperature of every request.")
    var temperature: Double = 0.8

    @Option(help: "Seed of the Poisson schedule; request i is sampled with seed + i.")
    var seed: UInt64 = 0

    @Option(help: "Service-level objective for goodput, e.g. ttft=2s,itl=100ms (keys ttft, itl, e2e; units ms or s).")
    var slo: String?

    @Option(help: "Model id (default: the first of GET /v1/models).")
    var model: String?

    @Option(name: .customLong("api-key"), help: "Bearer API key, if the server wants one.")
    var apiKey: String?

    @Option(help: "Seconds a response may stay silent.")
    var timeout: Double = 120

    @Flag(help: "Print the report as one JSON object on the last line.")
    var json = false

    @Option(help: "Directory for report.json, report.html and the plots.")
    var out: String?

    @Option(help: "Render the plots and page of a saved report.json into --out, running nothing.")
    var replot: String?

    @Flag(help: "Start and compare Baton split (baton up), Baton in one process (baton serve) and llama-server.")
    var compare = false

    @Option(help: "With --compare: which systems, in order (split, split-no-cache, serve, llama-server); ratios are against the last.")
    var systems = "split,serve,llama-server"

    @Option(help: "With --compare: the GGUF every system serves (default: the default model).")
    var gguf: String?

    @Option(help: "With --compare: engine threads of baton serve and llama-server (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("split-threads"), help: "With --compare: PREFILL,DECODE threads of baton up's workers (default: half of --threads each).")
    var splitThreads: String?

    @Option(help: "With --compare: requests generating at once (baton serve --max-batch, llama-server -np).")
    var parallel = 8

    @Option(help: "With --compare: tokens per request, prompt and reply.")
    var context = 4096

    @Option(name: .customLong("decode-workers"), help: "With --compare: decode worker processes of baton up (split systems).")
    var decodeWorkers = 1

    @Option(name: .customLong("kv-blocks"), help: "With --compare: KV cache blocks of each of baton up's workers (default: theirs).")
    var kvBlocks: Int?

    @Option(name: .customLong("split-policy"), help: "With --compare: the placement policy file of the split system (not of split-no-cache).")
    var splitPolicy: String?

    @Option(name: .customLong("llama-server"), help: "With --compare: the llama-server binary (default: Deploy/scripts/build-llamacpp.sh's build for this CPU, else Python's llama_cpp.server).")
    var llamaServer: String?

    func list<T>(_ text: String, _ flag: String, _ parse: (String) -> T?, valid: (T) -> Bool) throws -> [T] {
        let values = text.split(separator: ",").map { parse($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0.map(valid) ?? false }) else {
            throw ValidationError("\(flag) takes positive numbers separated by commas, got \"\(text)\"")
        }
        return values.map { $0! }
    }

    func levels() throws -> [ServeBenchmark.LevelSpec] {
        if concurrency != nil, rate != nil { throw ValidationError("give --concurrency or --rate, not both") }
        if let rate { return try list(rate, "--rate", { Double($0) }, valid: { $0 > 0 && $0.isFinite }).map { .rate($0) } }
        if let concurrency { return try list(concurrency, "--concurrency", { Int($0) }, valid: { $0 >= 1 }).map { .concurrency($0) } }
        if workloadOptions.trace != nil { return [.trace(speed: workloadOptions.traceSpeed)] }
        return [1, 2, 4].map { .concurrency($0) }
    }

    func endpoint() throws -> (String, Int) {
        guard let parsed = URLComponents(string: url), parsed.scheme == "http", let host = parsed.host else {
            throw ValidationError("--url must look like http://HOST:PORT, got \"\(url)\" (https is not supported here)")
        }
        return (host, parsed.port ?? 80)
    }

    func compareSystems() throws -> [ServePeer.Kind] {
        let kinds = systems.split(separator: ",").map { ServePeer.Kind(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
        guard !kinds.isEmpty, kinds.allSatisfy({ $0 != nil }), Set(kinds.map { $0! }).count == kinds.count else {
            throw ValidationError("--systems takes distinct names from split, split-no-cache, serve, llama-server separated by commas, got \"\(systems)\"")
        }
        return kinds.map { $0! }
    }

    func validate() throws {
        _ = try levels()
        _ = try endpoint()
        guard requests >= 1, timeout > 0, temperature >= 0 else {
            throw ValidationError("--requests and --timeout must be positive, --temperature ≥ 0")
        }
        if let slo {
            do { _ = try ServeSLO(parsing: slo) } catch { throw ValidationError(error.message) }
        }
        if compare {
            _ = try compareSystems()
            guard threads >= 1, parallel >= 1, context >= 64, (1...16).contains(decodeWorkers) else {
                throw ValidationError("--threads and --parallel must be positive, --context at least 64, --decode-workers in 1...16")
            }
            if let kvBlocks, kvBlocks < 1 { throw ValidationError("--kv-blocks must be at least 1") }
            if let splitPolicy, !FileManager.default.fileExists(atPath: splitPolicy) {
                throw ValidationError("--split-policy \(splitPolicy) does not exist")
            }
            if let splitThreads {
                _ = try list(splitThreads, "--split-threads", { Int($0) }, valid: { $0 >= 1 })
            }
        }
    }

    func run() async throws {
        if let replot {
            guard let out else { throw ValidationError("--replot needs --out DIR") }
            let report: ServeReport
            do {
                report = try JSONDecoder().decode(ServeReport.self, from: Data(contentsOf: URL(fileURLWithPath: replot)))
            } catch {
                throw CommandFailure("\(replot) is not a bench serve report.json: \(error)")
            }
            let files = try ServePlots.write(report, to: out)
            print("wrote \(files.count) files to \(out)")
            return
        }
        let levels = try levels()
        let workload = try workloadOptions.workload(requests: requests)
        let slo = try self.slo.map { try ServeSLO(parsing: $0) }
        let description = ServeRunDescription(
            preset: try workloadOptions.presetShape(), trace: workloadOptions.trace, requests: workload.requests.count, levels: levels, seed: seed,
            temperature: temperature, slo: slo, timeoutSeconds: timeout)
        func benchmark(port: Int, host: String = "127.0.0.1") -> ServeBenchmark {
            ServeBenchmark(configuration: .init(
                host: host, port: port, model: model, workload: workload, levels: levels, temperature: temperature, seed: seed,
                slo: slo, apiKey: apiKey, timeout: .milliseconds(Int(timeout * 1000))))
        }
        if !json { Self.printHeader() }
        let report: ServeReport
        if compare {
            report = try await runComparison(description: description, benchmark: { benchmark(port: $0) })
        } else {
            let (host, port) = try endpoint()
            let (model, results) = try await benchmark(port: port, host: host).run { level in
                if !json { Self.printLevel(level, system: nil) }
            }
            report = ServeReport(configuration: description, systems: [
                .init(name: "server", command: [], url: url, model: model, levels: results),
            ])
        }
        if !json, report.configuration.slo != nil, levels.contains(where: { if case .rate = $0 { true } else { false } }) {
            for system in report.systems {
                let best = ServeReport.maxRate(system.levels).map { "\(ServeBenchmark.LevelSpec.number($0))/s" } ?? "none of the rates run"
                print("\(system.name): highest rate with ≥ 90 % of requests meeting the SLO: \(best)")
            }
        }
        if !json, !report.ratios.isEmpty { printRatios(report) }
        if let out {
            let files = try ServePlots.write(report, to: out)
            if !json { print("wrote \(files.count) files to \(out): \((out as NSString).appendingPathComponent("report.html"))") }
        }
        if json { print(try report.json()) }
        if report.systems.contains(where: { $0.levels.contains { $0.summary.succeeded == 0 } }) { throw ExitCode(1) }
    }

    /// Starts every system, warms each up, then runs level by level, the systems' order reversed at every level so
    /// that a drift in machine speed favours none; stops them all however it ends.
    func runComparison(description: ServeRunDescription, benchmark: (Int) -> ServeBenchmark) async throws -> ServeReport {
        let kinds = try compareSystems()
        // The peers' logs and baton up's state (certificates with keys: not next to a report that may be shared).
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("baton-bench-\(getpid())").path
        let split = try splitThreads.map { try list($0, "--split-threads", { Int($0) }, valid: { $0 >= 1 }) }
        if let split, split.count != 2 { throw ValidationError("--split-threads takes PREFILL,DECODE") }
        var settings = ServePeer.Settings(
            baton: try UpCommand.executablePath(), model: try modelPath(), threads: threads,
            splitThreads: split.map { (prefill: $0[0], decode: $0[1]) }, context: context, parallel: parallel, workDirectory: work,
            llamaServer: llamaServer)
        settings.decodeWorkers = decodeWorkers
        settings.kvBlocks = kvBlocks
        settings.splitPolicy = splitPolicy.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var peers: [ServePeer] = []
        do {
            for kind in kinds {
                let plan = try ServePeer.plan(kind, settings: settings, port: try UpCommand.freePort())
                say("starting \(plan.name): \(plan.commandLine.joined(separator: " "))")
                peers.append(try ServePeer.start(plan, workDirectory: work))
            }
            var benchmarks: [ServeBenchmark] = []
            var models: [String] = []
            for peer in peers {
                try await peer.waitUntilReady(timeout: .seconds(600))
                let bench = benchmark(peer.plan.port)
                let model = try await bench.resolveModel()
                try await bench.warmUp(model: model)
                say("\(peer.plan.name) is ready (model \(model), log \(peer.logPath))")
                benchmarks.append(bench)
                models.append(model)
            }
            var levels = Array(repeating: [ServeBenchmark.Level](), count: peers.count)
            for (number, spec) in try self.levels().enumerated() {
                let order = number % 2 == 0 ? Array(peers.indices) : Array(peers.indices.reversed())
                for index in order {
                    let level = try await benchmarks[index].run(spec, model: models[index])
                    if !json { Self.printLevel(level, system: peers[index].plan.name) }
                    levels[index].append(level)
                }
            }
            for peer in peers { await peer.stop() }
            return ServeReport(configuration: description, systems: peers.indices.map {
                .init(name: peers[$0].plan.name, command: peers[$0].plan.commandLine, url: "http://127.0.0.1:\(peers[$0].plan.port)",
                      model: models[$0], levels: levels[$0])
            })
        } catch {
            for peer in peers { await peer.stop() }
            throw error
        }
    }

    private func modelPath() throws -> String {
        do {
            return try DefaultModel.resolve(gguf)
        } catch {
            throw CommandFailure(error.message)
        }
    }

    private func say(_ text: String) {
        FileHandle.standardError.write(Data("[bench] \(text)\n".utf8))
    }

    /// The table's header; `baton simulate` prints its figures in the same table.
    static func printHeader() {
        print("system        level              ok/sent  TTFT p50/p90/p99 ms   ITL p50/p90/p99 ms     E2E p50 ms  out tok/s  goodput")
    }

    static func printLevel(_ level: ServeBenchmark.Level, system: String?) {
        let s = level.summary
        let errors = s.errors.isEmpty ? "" : "  errors: " + s.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        let goodput = s.goodput.map { String(format: "%.2f/s (%.0f%%)", $0, (s.sloAttainment ?? 0) * 100) } ?? "-"
        let numbers = String(
            format: "%3d/%-3d %6.0f %6.0f %6.0f   %6.1f %6.1f %6.1f   %9.0f  %9.1f  ",
            s.succeeded, s.requests, s.ttftMs.p50, s.ttftMs.p90, s.ttftMs.p99,
            s.itlMs.p50, s.itlMs.p90, s.itlMs.p99, s.e2eMs.p50, s.outputTokensPerSecond)
        print((system ?? "server").padding(toLength: 13, withPad: " ", startingAt: 0) + " "
            + level.spec.description.padding(toLength: 18, withPad: " ", startingAt: 0) + " " + numbers + goodput + errors)
        // Conversations: each turn's latency and how much KV its requests shipped between workers.
        for turn in s.turns ?? [] {
            let kv = turn.kvBytesPerRequest.map { String(format: "KV shipped %.2f MB/request", $0 / 1e6) } ?? ""
            let perTransfer = turn.kvBytesPerTransfer.map {
                String(format: " (%.2f MB in each of %d transfers)", $0 / 1e6, turn.transfers ?? 0)
            } ?? ""
            let saved = turn.kvBytesNotShippedPerRequest.map { String(format: ", %.2f MB held by the decode worker", $0 / 1e6) } ?? ""
            let good = turn.goodput.map { String(format: "  goodput %.2f/s (%.0f%%)", $0, (turn.sloAttainment ?? 0) * 100) } ?? ""
            print("    turn \(turn.turn + 1)  " + String(
                format: "%3d/%-3d prompt %5.0f tok  TTFT p50 %6.0f p99 %6.0f ms", turn.succeeded, turn.requests, turn.promptTokensMean,
                turn.ttftMs.p50, turn.ttftMs.p99) + good + "  " + kv + perTransfer + saved)
        }
        // A level can take minutes: show it now, not when a redirected stdout's buffer fills.
        fflush(nil)
    }

    private func printRatios(_ report: ServeReport) {
        print("\nratios against \(report.ratios[0].versus) (same run): out tok/s, goodput, TTFT p50, ITL p50")
        func r(_ value: Double?) -> String { value.map { String(format: "%5.2fx", $0) } ?? "    -" }
        for ratio in report.ratios {
            print("\(ratio.system.padding(toLength: 13, withPad: " ", startingAt: 0)) \(ratio.level.padding(toLength: 18, withPad: " ", startingAt: 0)) "
                + "\(r(ratio.outputTokensPerSecond))  \(r(ratio.goodput))  \(r(ratio.ttftP50))  \(r(ratio.itlP50))"
                + (ratio.kvBytesPerRequest.map { "  KV bytes/request \(r($0))" } ?? ""))
            // How many times lower the reference's figure is here (higher is better for this system).
            func lower(_ value: Double?) -> String { value.map { $0 > 0 ? String(format: "%5.2fx", 1 / $0) : "  inf" } ?? "    -" }
            for turn in ratio.turns ?? [] {
                print("    turn \(turn.turn + 1): TTFT p50 \(lower(turn.ttftP50)) lower, p99 \(lower(turn.ttftP99)) lower, "
                    + "goodput \(r(turn.goodput)), KV bytes shipped per request \(lower(turn.kvBytesPerRequest)) lower, "
                    + "per transfer \(lower(turn.kvBytesPerTransfer)) lower")
            }
        }
    }
}
