import Foundation

/// A router's view of the cluster: the last membership snapshot placement pushed, the work this router has
/// itself assigned since, and the workers it found failing itself. Routers choose with `Placement.choose` on
/// this view, so a request never waits for placement, and placement being down only freezes the snapshot.
///
/// A value type with no I/O and no clock of its own: the caller passes the time. Not thread-safe; the owner
/// keeps it behind a lock.
public struct MembershipView: Sendable {
    /// What placement last said, before this router's own bookkeeping.
    public private(set) var snapshot = ClusterState()
    /// The snapshot with this router's placements counted (`Worker.pending`).
    public private(set) var state = ClusterState()
    public private(set) var policy = PlacementPolicy()
    /// Placement's membership version of the snapshot (it grows with every join, loss, departure, role or policy
    /// change); 0 before the first snapshot.
    public private(set) var version: UInt64 = 0
    /// The placement process that sent the snapshot: a restarted placement starts its versions again.
    public private(set) var placementIncarnation = ""
    /// When the snapshot arrived (the caller's clock).
    public private(set) var receivedAt: Date?
    /// Loads older than this (no snapshot for this long: placement unreachable) no longer describe the queues;
    /// choices then count this router's own placements only. Three missed load pushes.
    public static let staleLoadSeconds: TimeInterval = 3
    /// Workers this router saw fail (unreachable, reset), with the process it saw fail and when.
    public private(set) var failures: [String: (incarnation: String?, at: Date)] = [:]

    public init() {}

    /// Whether a snapshot has arrived.
    public var hasSnapshot: Bool { !placementIncarnation.isEmpty }

    /// Takes a snapshot from placement. Work this router placed since the worker's last heartbeat keeps
    /// counting (`ClusterState.carryPending`); a failure mark ends when the snapshot shows a heartbeat after it
    /// or a new process under that name.
    public mutating func install(_ newState: ClusterState, policy newPolicy: PlacementPolicy, version newVersion: UInt64,
                                 placementIncarnation incarnation: String, at now: Date) {
        receivedAt = now
        var next = newState
        next.carryPending(from: state)
        state = next
        snapshot = newState
        policy = newPolicy
        version = newVersion
        placementIncarnation = incarnation
        failures = failures.filter { name, failure in
            guard let worker = newState.workers[name] else { return false }
            return worker.incarnation == failure.incarnation && worker.lastSeen <= failure.at
        }
    }

    /// Records that `worker` failed for this router at `now` (it could not be reached or broke a stream): choices
    /// avoid it until placement reports a heartbeat after `now` or a new process, or until one heartbeat timeout
    /// has passed (then it is tried again, which matters while placement is unreachable).
    public mutating func markFailed(_ worker: String, at now: Date) {
        failures[worker] = (state.workers[worker]?.incarnation, now)
    }

    /// Uncounts a request placed on `pair` once it has started or ended (see `ClusterState.releasePlacement`).
    public mutating func release(_ pair: WorkerPair) {
        state.releasePlacement(pair)
    }

    /// The state choices are made on at `now`: the snapshot with this router's placements, and with the workers
    /// it saw fail within the last heartbeat timeout counted as lost. When the snapshot is older than
    /// `staleLoadSeconds` its reported queues are dropped: only this router's own waiting requests count.
    public func effectiveState(at now: Date) -> ClusterState {
        var effective = state
        if let receivedAt, now.timeIntervalSince(receivedAt) > Self.staleLoadSeconds { effective.forgetReportedQueues() }
        let hold = policy.membership.heartbeatTimeoutSeconds
        for (name, failure) in failures.sorted(by: { $0.key < $1.key }) where now.timeIntervalSince(failure.at) < hold {
            effective.apply(.heartbeatLost(worker: name, at: failure.at))
        }
        return effective
    }

    /// Chooses workers for a prompt with `Placement.choose` on `effectiveState(at:)`, and counts an admitted
    /// request against its workers until their next heartbeat.
    /// `excluding` names workers this request already failed on (a resumed request): they are left out as if the
    /// policy's pools excluded them.
    /// `explains: false` leaves out why (see `Placement.choose`).
    public mutating func choose<R: RandomNumberGenerator>(promptTokens: Int, excluding: [String] = [], at now: Date,
                                                         explains: Bool = true,
                                                         rng: inout R) throws(PlacementError) -> Decision {
        var policy = self.policy
        policy.prefill.excludeWorkers += excluding
        policy.decode.excludeWorkers += excluding
        let decision = try Placement.choose(promptTokens: promptTokens, state: effectiveState(at: now), policy: policy,
                                            explains: explains, rng: &rng)
        if case .admit(let pair) = decision.admission { state.recordPlacement(pair) }
        return decision
    }
}
