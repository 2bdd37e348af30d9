import Foundation
import Generation
import Logging
import Metrics
import Placement
import Synchronization

/// A router's copy of the cluster, kept current by placement's watch stream: requests are placed locally with
/// `Placement.choose` on it (`MembershipView`), so placement is off the request path. While placement is
/// unreachable the router keeps choosing from the last snapshot plus the failures it sees itself, reports
/// itself degraded (with the reason and since when), and reconnects with backoff.
///
/// `run` until cancelled; everything else is thread-safe and never waits.
public final class PlacementWatch: Sendable {
    private struct State {
        var view = MembershipView()
        var random = SystemRandomNumberGenerator()
        /// Whether the watch stream is open and delivering.
        var connected = false
        /// When and why the stream was lost (or could not be opened); nil while connected.
        var lostSince: Date?
        var lostReason: String?
        /// When the last snapshot arrived (router clock).
        var receivedAt: ContinuousClock.Instant?
    }

    private let placement: PlacementClient
    private let state = Mutex(State())
    private let onChange: @Sendable () -> Void
    private let metrics: any MetricsFactory
    private let logger: Logger
    private let idleTimeout: Duration

    /// - Parameters:
    ///   - idleTimeout: a stream silent this long counts as broken (placement sends keep-alives every second).
    ///   - onChange: called after each snapshot (the admission queue looks again).
    init(placement: PlacementClient, idleTimeout: Duration = .seconds(4), metrics: any MetricsFactory, logger: Logger,
         onChange: @escaping @Sendable () -> Void) {
        self.placement = placement
        self.idleTimeout = idleTimeout
        self.metrics = metrics
        self.logger = logger
        self.onChange = onChange
        state.withLock { $0.lostSince = Date(); $0.lostReason = "no membership snapshot from placement yet" }
    }

    /// Keeps the watch open until cancelled: reconnects with backoff (200 ms doubling to 2 s) when it breaks.
    func run() async {
        var backoff: Duration = .milliseconds(200)
        while !Task.isCancelled {
            do throws(ClusterError) {
                let stream = try await placement.watch(idleTimeout: idleTimeout)
                defer { stream.cancel() }
                while let snapshot = try await stream.next() {
                    install(snapshot)
                    backoff = .milliseconds(200)
                }
                lost("placement at \(placement.host):\(placement.port) ended the membership watch")
            } catch {
                if Task.isCancelled { return }
                lost(error.message)
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(2))
        }
    }

    /// Takes a snapshot (also how tests feed the view).
    func install(_ snapshot: MembershipSnapshot) {
        let (wasConnected, outage, previous) = state.withLock { state in
            let result = (state.connected, state.lostSince, state.view.version)
            state.view.install(snapshot.state, policy: snapshot.policy, version: snapshot.version,
                               placementIncarnation: snapshot.placementIncarnation, at: Date())
            state.connected = true
            state.lostSince = nil
            state.lostReason = nil
            state.receivedAt = .now
            return result
        }
        if !wasConnected {
            let away = outage.map { String(format: " after %.1f s", Date().timeIntervalSince($0)) } ?? ""
            logger.info("membership snapshot version \(snapshot.version) from placement at \(placement.host):\(placement.port)\(away): \(snapshot.events.filter { if case .joined = $0 { true } else { false } }.count) workers")
        } else if snapshot.version != previous {
            logger.debug("membership snapshot version \(snapshot.version)")
        }
        publish(snapshot.state)
        onChange()
    }

    private func lost(_ reason: String) {
        let first = state.withLock { state in
            defer {
                state.connected = false
                state.lostReason = reason
            }
            if state.lostSince == nil || state.connected { state.lostSince = Date() }
            return state.connected
        }
        if first {
            logger.warning("placement unreachable, serving from the last membership snapshot: \(reason)")
        }
        publishGauges()
    }

    /// Chooses workers for a prompt on the current view; the decision's admission says what to do.
    func choose(promptTokens: Int, excluding: [String] = []) throws(PlacementError) -> (decision: Decision, policy: PlacementPolicy, endpoints: [String: WorkerAddress]) {
        try state.withLock { state throws(PlacementError) in
            let decision = try state.view.choose(promptTokens: promptTokens, excluding: excluding, at: Date(), rng: &state.random)
            var endpoints: [String: WorkerAddress] = [:]
            for name in [decision.prefill, decision.decode].compactMap({ $0 }) {
                endpoints[name] = state.view.state.workers[name]?.address
            }
            return (decision, state.view.policy, endpoints)
        }
    }

    /// The policy in force (the built-in defaults before the first snapshot) and whether a snapshot arrived.
    var policy: (policy: PlacementPolicy, hasSnapshot: Bool) {
        state.withLock { ($0.view.policy, $0.view.hasSnapshot) }
    }

    /// Uncounts a request placed on `pair` that has its first token or ended, and lets the queue look again.
    func release(_ pair: WorkerPair) {
        state.withLock { $0.view.release(pair) }
        onChange()
    }

    /// Records that this router could not use `worker` (see `MembershipView.markFailed`).
    func markFailed(_ worker: String, reason: String) {
        state.withLock { $0.view.markFailed(worker, at: Date()) }
        logger.warning("avoiding worker \(worker) until placement reports it alive again: \(reason)")
    }

    /// Ready when the snapshot has an active decode worker and the watch is open; degraded when it has one but
    /// placement is unreachable; unavailable otherwise.
    func health() -> BackendHealth {
        publishGauges()
        return state.withLock { state in
            let view = state.view
            let serving = view.effectiveState(at: Date()).sortedWorkers.filter { $0.status == .active }
            let where_ = "placement at \(placement.host):\(placement.port)"
            guard view.hasSnapshot else {
                return .unavailable(reason: "no membership snapshot from \(where_) yet: \(state.lostReason ?? "connecting")")
            }
            guard serving.contains(where: { $0.roles.contains(.decode) }) else {
                return .unavailable(reason: serving.isEmpty && view.state.workers.isEmpty
                    ? "no worker has registered with placement yet" : "no active worker may decode")
            }
            if !state.connected, let since = state.lostSince {
                let age = state.receivedAt.map { $0.duration(to: .now) / .seconds(1) } ?? 0
                return .degraded(
                    reason: "\(where_) is unreachable (\(state.lostReason ?? "unknown")); serving from membership snapshot "
                        + "version \(view.version), \(String(format: "%.1f", age)) s old",
                    sinceEpochSeconds: since.timeIntervalSince1970)
            }
            return .ready
        }
    }

    /// Snapshot age, version and connection gauges (called by `health` and on every change).
    func publishGauges() {
        let (age, version, connected) = state.withLock { state in
            (state.receivedAt.map { $0.duration(to: .now) / .seconds(1) } ?? -1, state.view.version, state.connected)
        }
        Gauge(label: "baton_router_placement_snapshot_age_seconds", dimensions: [], factory: metrics).record(age)
        Gauge(label: "baton_router_placement_snapshot_version", dimensions: [], factory: metrics).record(Double(version))
        Gauge(label: "baton_router_placement_connected", dimensions: [], factory: metrics).record(connected ? 1 : 0)
    }

    /// Per-worker load gauges from the snapshot.
    private func publish(_ cluster: ClusterState) {
        publishGauges()
        for worker in cluster.sortedWorkers {
            let dimensions = [("worker", worker.name), ("role", worker.roles.map(\.rawValue).joined(separator: "+"))]
            Gauge(label: "baton_router_worker_queue_depth", dimensions: dimensions, factory: metrics).record(worker.load.queueDepth)
            Gauge(label: "baton_router_worker_active_sequences", dimensions: dimensions, factory: metrics)
                .record(worker.load.activeSequences)
            Gauge(label: "baton_router_worker_free_kv_blocks", dimensions: dimensions, factory: metrics)
                .record(worker.load.freeKVBlocks)
            if let prompt = worker.load.promptTokens, let cached = worker.load.cachedPromptTokens {
                Gauge(label: "baton_router_worker_prompt_tokens", dimensions: dimensions, factory: metrics).record(prompt)
                Gauge(label: "baton_router_worker_cached_prompt_tokens", dimensions: dimensions, factory: metrics).record(cached)
            }
            if let shipped = worker.load.kvBytesShipped, let saved = worker.load.kvBytesNotShipped {
                Gauge(label: "baton_router_worker_kv_bytes_shipped", dimensions: dimensions, factory: metrics).record(shipped)
                Gauge(label: "baton_router_worker_kv_bytes_not_shipped", dimensions: dimensions, factory: metrics).record(saved)
            }
        }
    }
}
