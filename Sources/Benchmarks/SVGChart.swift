import Foundation

/// A line chart as a standalone SVG document: axes with round-numbered ticks, one coloured polyline per series
/// (with dots at the points, or as a step function for a CDF) and a legend. No dependencies: the text is the file.
public struct SVGChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]

        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// Draw each series as a staircase (a CDF) without dots.
    public var steps: Bool
    public var width = 640.0
    public var height = 400.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], steps: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.steps = steps
    }

    /// Colour-blind-safe palette (Okabe–Ito), one per series in order.
    static let colours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

    /// The empirical CDF of `values` as chart points: (value, share of values ≤ it), at most `limit` of them (evenly
    /// spaced ranks, the last always kept) so that thousands of token gaps still make a small file.
    public static func cdf(_ values: [Double], limit: Int = 400) -> [(x: Double, y: Double)] {
        let sorted = values.sorted()
        let count = sorted.count
        let ranks = count <= limit ? Array(0..<count) : (0..<limit).map { Int((Double($0) * Double(count - 1) / Double(limit - 1)).rounded()) }
        return ranks.map { (x: sorted[$0], y: Double($0 + 1) / Double(count)) }
    }

    public func render() -> String {
        let left = 70.0, right = 160.0, top = 40.0, bottom = 55.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let all = series.flatMap(\.points)
        let xs = all.map(\.x), ys = all.map(\.y)
        let xTicks = Self.ticks(low: min(0, xs.min() ?? 0), high: xs.max() ?? 1)
        let yTicks = Self.ticks(low: min(0, ys.min() ?? 0), high: ys.max() ?? 1)
        let (x0, x1) = (xTicks.first!, xTicks.last!), (y0, y1) = (yTicks.first!, yTicks.last!)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (y - y0) / (y1 - y0) * plotHeight }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left + plotWidth / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(Self.escape(title))</text>

            """
        for tick in xTicks {
            svg += "<line x1=\"\(f(px(tick)))\" y1=\"\(f(top))\" x2=\"\(f(px(tick)))\" y2=\"\(f(top + plotHeight))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(px(tick)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(Self.label(tick))</text>\n"
        }
        for tick in yTicks {
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(py(tick)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(py(tick)))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(tick) + 4))\" text-anchor=\"end\">\(Self.label(tick))</text>\n"
        }
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#333\"/>\n"
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"

        for (number, one) in series.enumerated() {
            let colour = Self.colours[number % Self.colours.count]
            var points: [(Double, Double)] = []
            if steps {
                var previous = 0.0
                for point in one.points {
                    points.append((point.x, previous))
                    points.append((point.x, point.y))
                    previous = point.y
                }
            } else {
                points = one.points.map { ($0.x, $0.y) }
            }
            if !points.isEmpty {
                let path = points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            }
            if !steps {
                for point in one.points {
                    svg += "<circle cx=\"\(f(px(point.x)))\" cy=\"\(f(py(point.y)))\" r=\"3.5\" fill=\"\(colour)\"/>\n"
                }
            }
            let legendY = top + 10 + Double(number) * 20
            svg += "<line x1=\"\(f(left + plotWidth + 12))\" y1=\"\(f(legendY))\" x2=\"\(f(left + plotWidth + 32))\" y2=\"\(f(legendY))\" stroke=\"\(colour)\" stroke-width=\"3\"/>\n"
            svg += "<text x=\"\(f(left + plotWidth + 38))\" y=\"\(f(legendY + 4))\">\(Self.escape(one.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Round ticks (steps of 1, 2 or 5 × 10ⁿ) covering low…high, about five of them.
    static func ticks(low: Double, high: Double) -> [Double] {
        let span = high > low ? high - low : max(abs(high), 1)
        let raw = span / 5
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let first = (low / step).rounded(.down) * step
        var ticks: [Double] = []
        var tick = first
        while ticks.count < 50 {
            ticks.append(tick)
            if tick >= high && ticks.count > 1 { break }
            tick = first + Double(ticks.count) * step
        }
        return ticks
    }

    static func label(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e9 { return String(Int(value)) }
        return String(format: "%g", value)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
