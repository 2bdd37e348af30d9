import Logging
import Placement
import Synchronization

/// Keeps a worker known to the placement service: registers (retrying with backoff while the service is
/// unreachable), heartbeats its load at the interval the service asked for, and registers again when the
/// service has forgotten it (a restart without its log) or comes back after an outage. Each heartbeat carries what
/// the worker's prefix caches stored and evicted since the last one (`KVEventSource`): a reset after registering,
/// after a failed heartbeat and when placement asks for one, otherwise the change.
///
/// `run` until cancelled; `setDraining(true)` before shutting down, then `leave`. Thread-safe.
public final class WorkerAgent: Sendable {
    /// The longest wait between two attempts to reach an unreachable placement service.
    public static let maximumRetryInterval: Duration = .seconds(5)

    private struct State {
        var name: String?
        var draining = false
        var interval: Duration = .seconds(1)
        var events: KVEventSource?
    }

    /// What the worker's prefix caches hold, for its KV events.
    public struct PrefixCaches: Sendable {
        /// Tokens per block of the caches.
        public var blockSize: Int
        /// Called once per heartbeat: the block hashes each cache holds now; must be cheap.
        public var contents: @Sendable () -> KVEventSource.Contents

        public init(blockSize: Int, contents: @escaping @Sendable () -> KVEventSource.Contents) {
            self.blockSize = blockSize
            self.contents = contents
        }
    }

    private let client: PlacementClient
    private let registration: RegisterRequest
    private let load: @Sendable () -> WorkerLoad
    private let caches: PrefixCaches?
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - load: called once per heartbeat; must be cheap.
    ///   - caches: published as KV event batches with the heartbeats (needs the registration's incarnation); nil:
    ///     nothing published.
    public init(client: PlacementClient, registration: RegisterRequest, load: @escaping @Sendable () -> WorkerLoad,
                caches: PrefixCaches? = nil, logger: Logger) {
        self.client = client
        self.registration = registration
        self.load = load
        self.caches = caches
        self.logger = logger
        if let caches, let incarnation = registration.incarnation {
            state.withLock { $0.events = KVEventSource(incarnation: incarnation, blockSize: caches.blockSize) }
        }
    }

    /// The name the service registered this worker under; nil until registered.
    public var registeredName: String? { state.withLock { $0.name } }

    public func setDraining(_ draining: Bool) {
        state.withLock { $0.draining = draining }
    }

    /// Registers, then heartbeats until the task is cancelled.
    public func run() async {
        var backoff: Duration = .milliseconds(200)
        var lastFailure = ""
        while !Task.isCancelled {
            let registered = state.withLock { $0.name }
            do throws(ClusterError) {
                if let name = registered {
                    let (current, draining) = (load(), state.withLock { $0.draining })
                    let held = caches?.contents()
                    let batch = held.flatMap { held in state.withLock { $0.events?.next(held) } }
                    let answer: HeartbeatResponse?
                    do throws(ClusterError) {
                        answer = try await client.heartbeat(HeartbeatRequest(
                            name: name, load: current, draining: draining, incarnation: registration.incarnation,
                            kvEvents: batch))
                    } catch {
                        // The batch may or may not have arrived: only a reset is safe next.
                        state.withLock { $0.events?.failed() }
                        throw error
                    }
                    guard let answer else {
                        logger.warning("placement service no longer knows \(name); registering again")
                        state.withLock {
                            $0.name = nil
                            $0.events?.failed()
                        }
                        continue
                    }
                    state.withLock { $0.events?.delivered(resetRequested: answer.resetKVEvents) }
                } else {
                    let answer = try await client.register(registration)
                    state.withLock {
                        $0.name = answer.name
                        $0.interval = .milliseconds(max(100, answer.heartbeatIntervalMs))
                        // A (re-)registered worker tells placement everything its caches hold first.
                        $0.events?.failed()
                    }
                    logger.info("registered with placement at \(client.host):\(client.port) as \(answer.name), roles \(answer.assignedRoles.map(\.rawValue))")
                }
                if !lastFailure.isEmpty {
                    logger.info("placement service reachable again")
                    lastFailure = ""
                }
                backoff = .milliseconds(200)
                let interval = state.withLock { $0.interval }
                try? await Task.sleep(for: interval)
            } catch {
                // Cancelled mid-call: keep the registration, so that `leave` can still say goodbye.
                if Task.isCancelled { break }
                if error.code == .rejected {
                    logger.error("placement service refused this worker: \(error.message)")
                    // Refused as a stale process (409): forget the registration so nothing more is sent under it.
                    state.withLock { $0.name = nil }
                }
                if error.description != lastFailure {
                    logger.warning("placement service: \(error.message); retrying")
                    lastFailure = error.description
                }
                // After an outage the service may have restarted without this worker: re-register then.
                if error.code == .unavailable || error.code == .timeout { state.withLock { $0.name = nil } }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, Self.maximumRetryInterval)
            }
        }
    }

    /// Tells the service this worker is going away (best effort, within the client's timeout).
    public func leave() async {
        guard let name = state.withLock({ $0.name }) else { return }
        do throws(ClusterError) {
            try await client.leave(name: name, incarnation: registration.incarnation)
            logger.info("left the cluster as \(name)")
        } catch {
            logger.warning("could not tell placement that \(name) leaves: \(error.message)")
        }
        state.withLock { $0.name = nil }
    }
}
