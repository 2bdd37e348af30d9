import Foundation

/// Polls a server's Prometheus `GET /metrics` during a level for the gauges that show who is busy: Baton's router
/// (requests in flight and waiting; per worker of a cluster, queue depth and active sequences) and llama-server
/// (`--metrics`: requests processing and deferred). A server without `/metrics` gives an empty timeline.
final class MetricsSampler: @unchecked Sendable {
    /// Gauges sampled, by metric name, with the short name the timeline gives them.
    static let gauges: [String: String] = [
        "baton_router_requests_in_flight": "in flight",
        "baton_router_requests_waiting": "waiting",
        "baton_router_worker_queue_depth": "queue",
        "baton_router_worker_active_sequences": "active",
        "llamacpp:requests_processing": "processing",
        "llamacpp:requests_deferred": "deferred",
    ]

    /// The series of one Prometheus text exposition that the timeline keeps: "worker-name queue" for a labelled
    /// worker gauge, the short name alone otherwise.
    static func parse(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
            let series = parts[0]
            let name = series.split(separator: "{", maxSplits: 1).first.map(String.init) ?? ""
            guard let short = gauges[name] else { continue }
            if let range = series.range(of: "worker=\"") {
                let worker = series[range.upperBound...].prefix { $0 != "\"" }
                values["\(worker) \(short)"] = value
            } else {
                values[short] = value
            }
        }
        return values
    }

    private let host: String
    private let port: Int
    private let interval: Duration
    private let lock = NSLock()
    private var samples: [TimelineSample] = []
    private var task: Task<Void, Never>?

    init(host: String, port: Int, interval: Duration = .milliseconds(500)) {
        self.host = host
        self.port = port
        self.interval = interval
    }

    /// Starts sampling; times are counted from `start`.
    func start(at start: ContinuousClock.Instant) {
        let (host, port, interval) = (self.host, self.port, self.interval)
        task = Task { [weak self] in
            // One keep-alive connection; a server without /metrics (404) ends the sampling.
            try? await HTTPConnection.with(host: host, port: port) { connection in
                while !Task.isCancelled {
                    let (status, body) = try await connection.exchange(
                        method: .GET, path: "/metrics", headers: [], body: nil, timeout: .seconds(10), onLine: nil)
                    guard status == 200 else { return }
                    let values = Self.parse(String(decoding: body, as: UTF8.self))
                    if !values.isEmpty {
                        self?.append(TimelineSample(timeMs: start.duration(to: .now) / .milliseconds(1), values: values))
                    }
                    try await Task.sleep(for: interval)
                }
            }
        }
    }

    private func append(_ sample: TimelineSample) {
        lock.withLock { samples.append(sample) }
    }

    /// Stops sampling and returns the samples.
    func stop() async -> [TimelineSample] {
        task?.cancel()
        await task?.value
        return lock.withLock { samples }
    }
}

/// The gauges of one `/metrics` sample, `timeMs` after the level's start.
public struct TimelineSample: Codable, Sendable, Equatable {
    public var timeMs: Double
    public var values: [String: Double]

    public init(timeMs: Double, values: [String: Double]) {
        self.timeMs = timeMs
        self.values = values
    }

    enum CodingKeys: String, CodingKey {
        case timeMs = "t_ms", values
    }

    /// Per series, the share of samples in which it was above zero: for a worker's "active" gauge, its busy share.
    public static func busyShare(_ samples: [TimelineSample]) -> [String: Double] {
        guard !samples.isEmpty else { return [:] }
        var busy: [String: Int] = [:]
        for sample in samples {
            for (series, value) in sample.values { busy[series, default: 0] += value > 0 ? 1 : 0 }
        }
        return busy.mapValues { Double($0) / Double(samples.count) }
    }
}
