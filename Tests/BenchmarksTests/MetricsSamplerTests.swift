@testable import Benchmarks
import Testing

@Suite("Busy timeline from /metrics")
struct MetricsSamplerTests {
    @Test("The busy gauges of Baton's router and llama-server are read, per worker where labelled")
    func parsesGauges() {
        let text = """
            # HELP baton_router_requests_waiting Generation requests waiting for their first token (queue depth).
            # TYPE baton_router_requests_waiting gauge
            baton_router_requests_waiting 2
            baton_router_requests_in_flight 5.0
            baton_router_worker_queue_depth{role="prefill",worker="prefill-0"} 3
            baton_router_worker_active_sequences{worker="decode-0",role="decode"} 4
            baton_router_time_to_first_token_seconds_bucket{le="0.5"} 7
            llamacpp:requests_processing 1
            llamacpp:requests_deferred 0
            """
        #expect(MetricsSampler.parse(text) == [
            "waiting": 2, "in flight": 5, "prefill-0 queue": 3, "decode-0 active": 4, "processing": 1, "deferred": 0,
        ])
    }

    @Test("A gauge's busy share is the share of samples in which it was above zero")
    func busyShare() {
        let samples = [
            TimelineSample(timeMs: 0, values: ["decode-0 active": 0, "prefill-0 active": 1]),
            TimelineSample(timeMs: 500, values: ["decode-0 active": 2, "prefill-0 active": 1]),
            TimelineSample(timeMs: 1000, values: ["decode-0 active": 1, "prefill-0 active": 0]),
            TimelineSample(timeMs: 1500, values: ["decode-0 active": 1]),
        ]
        #expect(TimelineSample.busyShare(samples) == ["decode-0 active": 0.75, "prefill-0 active": 0.5])
        #expect(TimelineSample.busyShare([]).isEmpty)
    }
}
