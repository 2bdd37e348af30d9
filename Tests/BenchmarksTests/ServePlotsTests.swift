import Benchmarks
import Foundation
import Testing
#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite("Serving benchmark plots")
struct ServePlotsTests {
    /// Parses `text` as XML; returns the parser's error, if any, and the element names seen.
    static func parse(_ text: String) -> (error: (any Error)?, elements: [String]) {
        final class Names: NSObject, XMLParserDelegate {
            var names: [String] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) { names.append(name) }
        }
        let parser = XMLParser(data: Data(text.utf8))
        let names = Names()
        parser.delegate = names
        return parser.parse() ? (nil, names.names) : (parser.parserError ?? CocoaError(.fileReadCorruptFile), names.names)
    }

    static func report() -> ServeReport {
        let records = (0..<6).map {
            RequestRecord(index: $0, sentMs: Double($0) * 100, ttftMs: 200 + Double($0) * 40, e2eMs: 900, itlMs: [10, 12, 30],
                          promptTokens: 20, completionTokens: 4)
        }
        let slo = ServeSLO(ttftMs: 300, itlMs: 100)
        let levels = [0.5, 1, 2].map { rate in
            ServeBenchmark.Level(spec: .rate(rate), summary: LevelSummary(records: records, durationSeconds: 6 / rate, slo: slo), records: records)
        }
        return ServeReport(
            configuration: ServeRunDescription(preset: .shortChat, trace: nil, requests: 6, levels: levels.map(\.spec), seed: 3,
                                               temperature: 0, slo: slo, timeoutSeconds: 30),
            systems: [
                .init(name: "baton <split> & co", command: ["baton", "up"], url: "u", model: "m", levels: levels),
                .init(name: "llama-server", command: ["llama-server", "-np", "8"], url: "u", model: "m", levels: levels),
            ])
    }

    @Test("Every chart is well-formed SVG with one line per system, names escaped")
    func chartsAreWellFormed() throws {
        let charts = ServePlots.charts(Self.report())
        #expect(charts.map(\.name) == ["goodput", "throughput", "ttft-cdf-rate-0.5", "itl-cdf-rate-0.5", "ttft-cdf-rate-1",
                                       "itl-cdf-rate-1", "ttft-cdf-rate-2", "itl-cdf-rate-2"])
        for chart in charts {
            let (error, elements) = Self.parse(chart.svg)
            #expect(error == nil, "\(chart.name): \(String(describing: error))")
            #expect(elements.first == "svg")
            #expect(elements.filter { $0 == "polyline" }.count == 2, "\(chart.name)")
            #expect(chart.svg.contains("baton &lt;split&gt; &amp; co"))
        }
    }

    @Test("The report directory holds the JSON, the page and the charts, and the JSON reads back")
    func writesReport() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-plots-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let report = Self.report()
        let files = try ServePlots.write(report, to: directory)
        #expect(files.contains { $0.hasSuffix("report.html") } && files.contains { $0.hasSuffix("goodput.svg") })
        let decoded = try JSONDecoder().decode(ServeReport.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/report.json")))
        #expect(decoded == report)
        let page = try String(contentsOfFile: directory + "/report.html", encoding: .utf8)
        #expect(page.contains("<svg") && page.contains("llama-server -np 8") && page.contains("1.00×"))
        #expect(!page.contains("<?xml"))
        // Half the requests start within 300 ms at every rate: no rate reaches DistServe's 90 %.
        #expect(page.contains("SLO (DistServe's goodput): none of the rates run"))
    }

    @Test("Chart ticks are round numbers that cover the data")
    func ticks() {
        let chart = SVGChart(title: "t", xLabel: "x", yLabel: "y", series: [.init(name: "s", points: [(0, 0), (7.3, 113)])])
        let svg = chart.render()
        for label in [">0<", ">2<", ">4<", ">6<", ">8<", ">50<", ">100<", ">150<"] { #expect(svg.contains(label), "\(label)") }
        #expect(Self.parse(SVGChart(title: "empty", xLabel: "x", yLabel: "y", series: []).render()).error == nil)
    }
}

@Suite("Chart data")
struct ChartDataTests {
    @Test("A CDF rises to one at the largest value and keeps at most its limit of points")
    func cdf() {
        let small = SVGChart.cdf([3, 1, 2])
        let expectedShares: [Double] = [1.0 / 3, 2.0 / 3, 1]
        #expect(small.map(\.x) == [1, 2, 3])
        #expect(small.map(\.y) == expectedShares)
        let many = SVGChart.cdf((0..<10_000).map(Double.init), limit: 100)
        #expect(many.count == 100)
        #expect(many.first?.x == 0)
        #expect(many.last?.x == 9999 && many.last?.y == 1)
        #expect(zip(many, many.dropFirst()).allSatisfy { $0.x < $1.x && $0.y < $1.y })
    }
}
