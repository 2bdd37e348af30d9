import Prometheus

/// The router's Prometheus metrics, served by `GET /metrics`. One instance per application (tests make their
/// own); thread-safe.
///
/// Besides what the router measures itself (latencies, requests by status, in-flight and waiting requests,
/// token counts), it records each prefill→decode KV hand-off a finished generation reports
/// (``recordKVTransfer(transport:bytes:duration:)``). Per-worker figures come from the cluster backend through
/// swift-metrics, bootstrapped into this registry by `baton router`.
public final class RouterMetrics: Sendable {
    /// The registry everything is registered in; other components may add their own metrics to it.
    public let registry: PrometheusCollectorRegistry

    let timeToFirstToken: DurationHistogram
    let interTokenLatency: DurationHistogram
    let requestDuration: DurationHistogram
    /// Generation requests accepted and not yet finished.
    let inFlight: Gauge
    /// Generation requests accepted that have not received their first token (queued or in prefill).
    let waiting: Gauge
    let promptTokens: Prometheus.Counter
    let completionTokens: Prometheus.Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        timeToFirstToken = registry.makeDurationHistogram(
            descriptor: Self.name("time_to_first_token", "seconds", "Time from request arrival to its first generated token."),
            labels: [],
            buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60].map(Self.seconds))
        interTokenLatency = registry.makeDurationHistogram(
            descriptor: Self.name("inter_token_latency", "seconds", "Time between consecutive generated tokens of a request."),
            labels: [],
            buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5].map(Self.seconds))
        requestDuration = registry.makeDurationHistogram(
            descriptor: Self.name("request_duration", "seconds", "End-to-end time of generation requests."),
            labels: [],
            buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600].map(Self.seconds))
        inFlight = registry.makeGauge(
            descriptor: Self.name("requests_in_flight", "", "Generation requests accepted and not yet finished."),
            labels: [])
        waiting = registry.makeGauge(
            descriptor: Self.name("requests_waiting", "", "Generation requests waiting for their first token (queue depth)."),
            labels: [])
        promptTokens = registry.makeCounter(
            descriptor: Self.name("prompt_tokens", "total", "Prompt tokens of finished generation requests."),
            labels: [])
        completionTokens = registry.makeCounter(
            descriptor: Self.name("completion_tokens", "total", "Generated tokens of finished generation requests."),
            labels: [])
    }

    /// Counts one answered request. `endpoint` is a fixed route name (never a raw path, to bound cardinality).
    func countRequest(endpoint: String, status: Int) {
        registry.makeCounter(
            descriptor: Self.name("requests", "total", "HTTP requests answered, by endpoint and status."),
            labels: [("endpoint", endpoint), ("status", String(status))]
        ).increment()
    }

    /// Records one KV-cache hand-off between workers over `transport` (`tls-h2`, `shared-memory`, `rdma`, …) into
    /// decode worker `worker` (when known), which held the KV of `notShipped` more bytes in its prefix cache.
    public func recordKVTransfer(transport: String, bytes: Int, duration: Duration, notShipped: Int = 0, worker: String? = nil) {
        registry.makeCounter(
            descriptor: Self.name("kv_transfer_bytes", "total", "KV cache bytes moved from prefill to decode workers, by transport."),
            labels: [("transport", transport)]
        ).increment(by: Int64(bytes))
        if let worker {
            registry.makeCounter(
                descriptor: Self.name(
                    "kv_shipped_bytes", "total", "KV cache bytes that reached each decode worker from prefill workers."),
                labels: [("worker", worker)]
            ).increment(by: Int64(bytes))
            registry.makeCounter(
                descriptor: Self.name(
                    "kv_not_shipped_bytes", "total",
                    "KV cache bytes of prompt positions each decode worker's prefix cache held, which no transfer had to carry."),
                labels: [("worker", worker)]
            ).increment(by: Int64(notShipped))
        }
        registry.makeDurationHistogram(
            descriptor: Self.name("kv_transfer_duration", "seconds", "Time of each KV cache hand-off, by transport."),
            labels: [("transport", transport)],
            buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5].map(Self.seconds)
        ).record(duration)
    }

    /// The Prometheus text exposition of every registered metric.
    public func exposition() -> String {
        registry.emitToString()
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "baton", subsystem: "router", metricName: metric, unitName: unit, helpText: help)
    }

    private static func seconds(_ value: Double) -> Duration {
        .nanoseconds(Int64((value * 1e9).rounded()))
    }
}
