import ArgumentParser
import Benchmarks
import Foundation
import Placement

/// `baton simulate`: the cluster simulator (see `ClusterSimulator`), its calibration and its policy sweep.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Simulate a cluster of many workers under a bench serve workload with the real placement policy.",
        discussion: """
            Workers come from --cluster (Deploy/config/simulate/cluster.yaml documents the format), decisions from \
            --policy through the same placement function as the cluster, and times from a cost model fitted on a real \
            box: run `baton simulate --calibrate [--threads N]` once to measure this box and write --costs. The \
            workload takes bench serve's options (--preset, --trace, --rate, --requests, --slo) and the report has its \
            shape (--json: the same report JSON; --out: the same plots). --sweep simulates variants of the policy and of \
            the role split and prints the goodput of each (needs --slo).
            Example: baton simulate --cluster Deploy/config/simulate/cluster.yaml --policy Deploy/config/policy.yaml \
            --preset short-chat --rate 20,40 --requests 2000 --slo ttft=2s,itl=100ms
            """)

    @Flag(help: "Measure this box with the model and write the cost model to --costs, then exit.")
    var calibrate = false

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "With --calibrate: engine threads to measure with (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "With --calibrate: timed runs of each case (the median counts).")
    var repetitions = 3

    @Option(help: "The cost model file (written by --calibrate).")
    var costs = "~/.cache/baton/simulate-costs.json"

    @Option(help: "Cluster file: the simulated workers.")
    var cluster: String?

    @Option(help: "Placement policy file (default: every default).")
    var policy: String?

    @Option(help: "Comma-separated request rates per second (Poisson arrivals); one simulation each.")
    var rate: String?

    @OptionGroup var workloadOptions: WorkloadOptions

    @Option(help: "Requests per level (synthetic workloads).")
    var requests = 1000

    @Option(name: .customLong("tokens-per-word"), help: "Prompt tokens per word (measure it with bench serve's records).")
    var tokensPerWord: Double = 1

    @Option(name: .customLong("template-tokens"), help: "Tokens the chat template adds to every prompt.")
    var templateTokens = 0

    @Option(help: "Seed of the Poisson schedule and of power_of_two placement.")
    var seed: UInt64 = 0

    @Option(help: "Service-level objective for goodput, e.g. ttft=2s,itl=100ms.")
    var slo: String?

    @Flag(help: "Simulate variants of the policy and of the role split, and print the goodput of each.")
    var sweep = false

    @Flag(help: "Print the report as one JSON object on the last line (bench serve's report format).")
    var json = false

    @Option(help: "Directory for report.json, report.html and the plots.")
    var out: String?

    func validate() throws {
        if calibrate {
            guard threads >= 1, repetitions >= 1 else { throw ValidationError("--threads and --repetitions must be at least 1") }
            return
        }
        guard cluster != nil else { throw ValidationError("--cluster FILE is required (or --calibrate)") }
        guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
        guard tokensPerWord > 0, tokensPerWord.isFinite, templateTokens >= 0 else {
            throw ValidationError("--tokens-per-word must be positive and --template-tokens at least 0")
        }
        if sweep, slo == nil { throw ValidationError("--sweep compares goodput: give --slo, e.g. ttft=2s,itl=100ms") }
        if workloadOptions.trace != nil, rate != nil { throw ValidationError("--trace sets the arrival times: drop --rate") }
        if workloadOptions.trace == nil, rate == nil { throw ValidationError("give --rate (requests per second) or --trace") }
    }

    var costsPath: String { NSString(string: costs).expandingTildeInPath }

    func run() throws {
        if calibrate { return try runCalibration() }
        let model: CostModel
        do { model = try CostModel.load(path: costsPath) } catch {
            throw CommandFailure("\(error.description)\nrun `baton simulate --calibrate` first to measure this box")
        }
        let (cluster, policy): (SimulatedCluster, PlacementPolicy)
        do {
            cluster = try SimulatedCluster.load(path: self.cluster!)
            policy = try self.policy.map { p throws(PlacementError) in try PlacementPolicy.load(path: p) } ?? PlacementPolicy()
        } catch {
            throw CommandFailure(error.description)
        }
        let slo = try self.slo.map { try ServeSLO(parsing: $0) }
        var options = ClusterSimulator.Options()
        options.tokensPerWord = tokensPerWord
        options.templateTokens = templateTokens
        options.seed = seed
        options.slo = slo
        var workload = try workloadOptions.workload(requests: requests)
        // The simulator replays arrival times as they are: a faster replay is earlier timestamps.
        let speed = workloadOptions.traceSpeed
        for index in workload.requests.indices { workload.requests[index].timestamp = workload.requests[index].timestamp.map { $0 / speed } }
        let rates: [Double?] = try rate.map { text in
            try text.split(separator: ",").map { part -> Double? in
                guard let value = Double(part.trimmingCharacters(in: .whitespaces)), value > 0, value.isFinite else {
                    throw ValidationError("--rate takes positive numbers separated by commas, got \"\(text)\"")
                }
                return value
            }
        } ?? [nil]

        if sweep { return try runSweep(cluster: cluster, policy: policy, model: model, options: options, workload: workload, rates: rates) }

        if !json {
            print("simulating \(cluster.workers.count) workers (\(self.cluster!)), policy \(self.policy ?? "defaults"), "
                + "costs \(costs) (\(model.model), fitted at \(model.reference.threads) threads)")
            BenchServeCommand.printHeader()
        }
        var levels: [ServeBenchmark.Level] = []
        for rate in rates {
            let arrivals = try ClusterSimulator.arrivals(for: workload, rate: rate, seed: seed)
            let result = try ClusterSimulator(cluster: cluster, policy: policy, costs: model, options: options).run(arrivals)
            let level = ServeBenchmark.Level(spec: rate.map { .rate($0) } ?? .trace(speed: workloadOptions.traceSpeed), summary: result.summary,
                                             records: result.records)
            levels.append(level)
            if !json {
                BenchServeCommand.printLevel(level, system: "simulated")
                let busiest = result.busyShare.sorted { $0.value > $1.value }.prefix(3)
                    .map { "\($0.key) \(String(format: "%.0f", $0.value * 100)) %" }.joined(separator: ", ")
                print("              \(result.events) events in \(String(format: "%.2f", result.wallSeconds)) s; "
                    + "\(result.decodeOnly) decode-only, \(result.queuedAtRouter) waited at the router; busiest: \(busiest)")
            }
        }
        let description = ServeRunDescription(
            preset: try workloadOptions.presetShape(), trace: workloadOptions.trace, requests: workload.requests.count,
            levels: levels.map(\.spec), seed: seed, temperature: 0, slo: slo, timeoutSeconds: 0)
        let report = ServeReport(configuration: description, systems: [
            .init(name: "simulated", command: CommandLine.arguments, url: self.cluster!, model: model.model, levels: levels),
        ])
        if let out {
            let files = try ServePlots.write(report, to: out)
            if !json { print("wrote \(files.count) files to \(out)") }
        }
        if json { print(try report.json()) }
    }

    func runSweep(cluster: SimulatedCluster, policy: PlacementPolicy, model: CostModel, options: ClusterSimulator.Options,
                  workload: ServeWorkload, rates: [Double?]) throws {
        let simulator = ClusterSimulator(cluster: cluster, policy: policy, costs: model, options: options)
        let prompts = workload.requests.map { simulator.ownTokens($0) }
        let variants = PolicySweep.variants(policy: policy, cluster: cluster, promptTokens: prompts)
        for rate in rates {
            let arrivals = try ClusterSimulator.arrivals(for: workload, rate: rate, seed: seed)
            print("\nsweep at \(rate.map { "rate \(ServeBenchmark.LevelSpec.number($0))/s" } ?? "the trace's times"), "
                + "SLO \(options.slo!): \(variants.count) variants, best first")
            print("goodput/s  SLO met  TTFT p50/p90 ms   ITL p50 ms  out tok/s  variant")
            var rows: [(Double, String)] = []
            for variant in variants {
                let result = try ClusterSimulator(cluster: variant.cluster, policy: variant.policy, costs: model,
                                                  options: options).run(arrivals)
                let s = result.summary
                let line = String(format: "%9.2f  %6.0f%%  %7.0f %7.0f   %9.1f  %9.1f  ", s.goodput ?? 0, (s.sloAttainment ?? 0) * 100,
                                  s.ttftMs.p50, s.ttftMs.p90, s.itlMs.p50, s.outputTokensPerSecond) + variant.label
                rows.append((s.goodput ?? 0, line))
            }
            for (_, line) in rows.enumerated().sorted(by: { a, b in
                a.element.0 != b.element.0 ? a.element.0 > b.element.0 : a.offset < b.offset
            }).map(\.element) {
                print(line)
            }
        }
    }

    func runCalibration() throws {
        let path = try modelOptions.resolvedPath()
        let model: CostModel
        do {
            model = try CostCalibration.measure(modelPath: path, settings: .init(threads: threads, repetitions: repetitions)) {
                print($0)
                fflush(nil)
            }
        } catch let error as BenchmarkError {
            throw CommandFailure(error.description)
        }
        let directory = (costsPath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do { try model.save(path: costsPath) } catch { throw CommandFailure(error.description) }
        let p = model.prefill, d = model.decode
        print(String(format: "prefill: %.2f ms per pass + %.1f GFLOP per token at %.0f %% of %.0f GFLOP/s",
                     p.passOverheadSeconds * 1000, p.flopsPerToken / 1e9, p.efficiency * 100, model.reference.sgemmGFLOPS))
        print(String(format: "decode step: %.2f ms (weights at %.1f GB/s) + %.3f ms per sequence + %.2f µs per cached position",
                     d.weightSeconds * 1000, model.reference.memoryReadGBps, d.perSequenceSeconds * 1000,
                     d.perContextTokenSeconds * 1e6))
        let worst = model.samples.compactMap { s in s.fittedSeconds.map { abs($0 - s.seconds) / s.seconds } }.max() ?? 0
        print(String(format: "largest fit error over the %d measurements: %.0f %%", model.samples.count, worst * 100))
        print("wrote \(costsPath)")
    }
}
