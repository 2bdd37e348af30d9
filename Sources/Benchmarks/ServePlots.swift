import Foundation

/// The plots and the HTML page of a `bench serve` report: goodput and throughput against load per system, the
/// TTFT and inter-token latency CDFs of each level, all as SVG, and one HTML file that shows them with the tables.
public enum ServePlots {
    /// Chart file names (without extension) and their SVG text, in the order the page shows them.
    public static func charts(_ report: ServeReport) -> [(name: String, svg: String)] {
        guard let first = report.systems.first, !first.levels.isEmpty else { return [] }
        let axis = loadAxis(first.levels)
        var charts: [(String, String)] = []
        if report.configuration.slo != nil {
            charts.append(("goodput", SVGChart(
                title: "Goodput at \(report.configuration.slo!.description)", xLabel: axis, yLabel: "requests/s meeting the SLO",
                series: report.systems.map { system in
                    SVGChart.Series(name: system.name, points: system.levels.enumerated().map { (x: loadValue($1, $0), y: $1.summary.goodput ?? 0) })
                }).render()))
        }
        charts.append(("throughput", SVGChart(
            title: "Output throughput", xLabel: axis, yLabel: "output tokens/s",
            series: report.systems.map { system in
                SVGChart.Series(name: system.name, points: system.levels.enumerated().map { (x: loadValue($1, $0), y: $1.summary.outputTokensPerSecond) })
            }).render()))
        for system in report.systems {
            guard let level = system.levels.last(where: { !$0.timeline.isEmpty }) else { continue }
            let names = Set(level.timeline.flatMap(\.values.keys)).sorted()
            charts.append(("timeline-\(system.name)", SVGChart(
                title: "\(system.name): queues and busy workers, \(level.spec.description)", xLabel: "time (s)",
                yLabel: "requests",
                series: names.map { name in
                    SVGChart.Series(name: name, points: level.timeline.map { (x: $0.timeMs / 1000, y: $0.values[name] ?? 0) })
                }, steps: true).render()))
        }
        for (index, level) in first.levels.enumerated() {
            let label = level.spec.description
            let slug = label.replacingOccurrences(of: "/s", with: "").replacingOccurrences(of: "×", with: "x")
                .replacingOccurrences(of: " ", with: "-")
            func cdf(_ values: (ServeBenchmark.Level) -> [Double]) -> [SVGChart.Series] {
                report.systems.compactMap { system in
                    guard index < system.levels.count else { return nil }
                    return SVGChart.Series(name: system.name, points: SVGChart.cdf(values(system.levels[index])))
                }
            }
            charts.append(("ttft-cdf-\(slug)", SVGChart(
                title: "Time to first token, \(label)", xLabel: "TTFT (ms)", yLabel: "share of requests",
                series: cdf { $0.records.filter { $0.error == nil }.compactMap(\.ttftMs) }, steps: true).render()))
            charts.append(("itl-cdf-\(slug)", SVGChart(
                title: "Inter-token latency, \(label)", xLabel: "gap between streamed tokens (ms)", yLabel: "share of gaps",
                series: cdf { $0.records.filter { $0.error == nil }.flatMap(\.itlMs) }, steps: true).render()))
        }
        return charts
    }

    static func loadAxis(_ levels: [ServeBenchmark.Level]) -> String {
        if levels.first?.rate != nil { return "request rate (requests/s, Poisson)" }
        if levels.first?.concurrency != nil { return "concurrent clients" }
        return "trace speed-up"
    }

    static func loadValue(_ level: ServeBenchmark.Level, _ index: Int) -> Double {
        level.rate ?? level.concurrency.map(Double.init) ?? level.traceSpeed ?? Double(index + 1)
    }

    /// The HTML page: configuration, a table per system, the ratios, and every chart inline.
    public static func html(_ report: ServeReport, charts: [(name: String, svg: String)]) -> String {
        let e = SVGChart.escape
        let c = report.configuration
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>baton bench serve</title>
            <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}
            td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
            code{background:#f6f6f6;padding:1px 4px}.charts svg{max-width:100%;height:auto}</style></head><body>
            <h1>baton bench serve</h1>
            <p>Started \(e(c.startedAt)) on \(e(c.machine.cpu)), \(c.machine.cores) cores, load average \(c.machine.loadAverage.map { String(format: "%.1f", $0) } ?? "?") at the start.</p>
            <p>Workload: \(e(c.preset.map { "preset \($0.name) (\($0.promptWords) words in, \($0.maxTokens) tokens out, \($0.turns) turn\($0.turns == 1 ? "" : "s")\($0.systemWords > 0 ? ", a \($0.systemWords)-word system prompt" : ""))" } ?? "trace \(c.trace ?? "?")")),
            \(c.requests) requests per level; levels \(e(c.levels.joined(separator: ", "))); seed \(c.seed); temperature \(c.temperature);
            SLO \(e(c.slo?.description ?? "none")).</p>
            <p>Command: <code>\(e(c.commandLine.joined(separator: " ")))</code></p>

            """
        for system in report.systems {
            page += "<h2>\(e(system.name))</h2>\n"
            if !system.command.isEmpty { page += "<p><code>\(e(system.command.joined(separator: " ")))</code></p>\n" }
            page += "<table><tr><th>level</th><th>ok/sent</th><th>TTFT p50/p90/p99 ms</th><th>ITL p50/p90/p99 ms</th>"
                + "<th>TPOT p50 ms</th><th>E2E p50/p99 ms</th><th>out tok/s</th><th>goodput req/s</th><th>SLO met</th><th>errors</th></tr>\n"
            for level in system.levels {
                let s = level.summary
                func triple(_ p: Percentiles) -> String { String(format: "%.0f / %.0f / %.0f", p.p50, p.p90, p.p99) }
                page += "<tr><td>\(e(level.spec.description))</td><td>\(s.succeeded)/\(s.requests)</td><td>\(triple(s.ttftMs))</td>"
                    + "<td>\(String(format: "%.1f / %.1f / %.1f", s.itlMs.p50, s.itlMs.p90, s.itlMs.p99))</td>"
                    + "<td>\(String(format: "%.1f", s.tpotMs.p50))</td><td>\(String(format: "%.0f / %.0f", s.e2eMs.p50, s.e2eMs.p99))</td>"
                    + "<td>\(String(format: "%.1f", s.outputTokensPerSecond))</td>"
                    + "<td>\(s.goodput.map { String(format: "%.2f", $0) } ?? "–")</td>"
                    + "<td>\(s.sloAttainment.map { String(format: "%.0f %%", $0 * 100) } ?? "–")</td>"
                    + "<td>\(e(s.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")))</td></tr>\n"
            }
            page += "</table>\n"
            if c.slo != nil, system.levels.contains(where: { $0.rate != nil }) {
                page += "<p>Highest request rate with at least 90 % of requests meeting the SLO (DistServe's goodput): "
                    + (ServeReport.maxRate(system.levels).map { "\(ServeBenchmark.LevelSpec.number($0))/s" } ?? "none of the rates run")
                    + "</p>\n"
            }
            let busy = system.levels.filter { !$0.timeline.isEmpty }
            if !busy.isEmpty {
                let names = Set(busy.flatMap { $0.timeline.flatMap(\.values.keys) }).sorted()
                page += "<p>Share of <code>/metrics</code> samples (every 0.5 s) in which each gauge was above zero "
                    + "(for a worker's <code>active</code>, its busy share):</p>\n<table><tr><th>level</th>"
                    + names.map { "<th>\(e($0))</th>" }.joined() + "</tr>\n"
                for level in busy {
                    let share = TimelineSample.busyShare(level.timeline)
                    page += "<tr><td>\(e(level.spec.description))</td>"
                        + names.map { "<td>\(String(format: "%.0f %%", (share[$0] ?? 0) * 100))</td>" }.joined() + "</tr>\n"
                }
                page += "</table>\n"
            }
        }
        if !report.ratios.isEmpty {
            page += "<h2>Ratios (system / \(e(report.ratios[0].versus)), same run)</h2>\n<table><tr><th>level</th><th>system</th>"
                + "<th>out tok/s</th><th>goodput</th><th>TTFT p50</th><th>ITL p50</th><th>E2E p50</th></tr>\n"
            func r(_ value: Double?) -> String { value.map { String(format: "%.2f×", $0) } ?? "–" }
            for ratio in report.ratios {
                page += "<tr><td>\(e(ratio.level))</td><td>\(e(ratio.system))</td><td>\(r(ratio.outputTokensPerSecond))</td>"
                    + "<td>\(r(ratio.goodput))</td><td>\(r(ratio.ttftP50))</td><td>\(r(ratio.itlP50))</td><td>\(r(ratio.e2eP50))</td></tr>\n"
            }
            page += "</table>\n"
        }
        page += "<div class=\"charts\">\n"
        for chart in charts {
            // Inline SVG: drop the XML declaration, which is only valid at the start of a document.
            page += "<h3>\(e(chart.name))</h3>\n" + chart.svg.replacingOccurrences(of: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", with: "")
        }
        return page + "</div>\n</body></html>\n"
    }

    /// Writes `report.json`, `report.html` and one SVG per chart into `directory` (made if missing), and a PNG of
    /// each chart too when `rsvg-convert` is on the PATH. Returns the paths written.
    @discardableResult
    public static func write(_ report: ServeReport, to directory: String) throws -> [String] {
        let manager = FileManager.default
        do {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw BenchmarkError(.invalidArgument, "cannot make the report directory \(directory)", cause: error)
        }
        var written: [String] = []
        func save(_ name: String, _ text: String) throws {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                throw BenchmarkError(.invalidArgument, "cannot write \(path)", cause: error)
            }
            written.append(path)
        }
        let charts = charts(report)
        try save("report.json", try report.json() + "\n")
        for chart in charts { try save(chart.name + ".svg", chart.svg) }
        try save("report.html", html(report, charts: charts))
        if let converter = which("rsvg-convert") {
            for chart in charts {
                let svg = (directory as NSString).appendingPathComponent(chart.name + ".svg")
                let png = (directory as NSString).appendingPathComponent(chart.name + ".png")
                let process = Process()
                process.executableURL = URL(fileURLWithPath: converter)
                process.arguments = ["-o", png, svg]
                try? process.run()
                process.waitUntilExit()
                if process.terminationStatus == 0 { written.append(png) }
            }
        }
        return written
    }

    static func which(_ tool: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
