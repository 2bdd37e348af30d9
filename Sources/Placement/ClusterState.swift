import Foundation

/// The cluster as the membership log describes it: a pure fold of `MembershipEvent`s.
///
/// A value type with no I/O: the registry appends an event to the log, then applies it here.
/// Events naming a worker that is not a member (a heartbeat after `left`, say) change nothing.
public struct ClusterState: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable, Codable {
        /// Heartbeating within the timeout: may receive requests.
        case active
        /// Missed its heartbeat timeout: receives nothing until it heartbeats or re-joins.
        case lost
        /// Heartbeating, but finishing its in-flight requests before it leaves: receives nothing new.
        case draining
    }

    public struct Worker: Sendable, Equatable {
        public var profile: DeviceProfile
        /// Roles the worker offered when it joined (its `--role`).
        public var offeredRoles: [WorkerRole]
        /// Roles the placement service assigned; nil until it assigns any.
        public var assignedRoles: [WorkerRole]?
        public var status: Status
        public var joinedAt: Date
        /// Time of the last heartbeat (or of joining, before the first heartbeat).
        public var lastSeen: Date
        public var load: WorkerLoad
        /// Where the worker serves its peers; nil for members recorded before addresses were logged.
        public var address: MemberAddress?
        /// The model the worker serves (its KV compatibility fingerprint); nil when not recorded.
        public var modelFingerprint: String?
        /// The worker process that registered (a `WorkerIncarnation`); nil for workers that did not say.
        public var incarnation: String?
        /// Requests placement sent this worker since its last heartbeat (optimistic in-flight accounting):
        /// they count as queued in its load score until the next heartbeat reports the real load, so a burst
        /// between two heartbeats spreads over workers instead of piling onto the one that looked idlest.
        /// Admission (429) still goes by the reported queue. Not logged.
        public var pending: Int = 0

        public var name: String { profile.name }
        /// The roles placement uses: assigned ones when assigned, else offered ones.
        public var roles: [WorkerRole] { assignedRoles ?? offeredRoles }
    }

    /// Requests admitted on this state (`recordPlacement`): whose turn it is under `balancing.strategy:
    /// round_robin`. Not logged; each router counts its own and keeps the count across snapshots.
    public private(set) var placements = 0

    /// Members by name (active and lost; workers that left are removed).
    public private(set) var workers: [String: Worker] = [:]
    /// The members' names in order, kept as members join and leave: every placement walks the members in this
    /// order, and sorting a thousand of them on every request was most of its time.
    private var names: [String] = []

    public init() {}

    /// Members sorted by name: a stable order for output and tie-breaking.
    public var sortedWorkers: [Worker] { names.compactMap { workers[$0] } }

    /// The state after `event`.
    public func applying(_ event: MembershipEvent) -> ClusterState {
        var next = self
        next.apply(event)
        return next
    }

    /// Applies `event` in place.
    public mutating func apply(_ event: MembershipEvent) {
        switch event {
        case .joined(let profile, let roles, let address, let fingerprint, let incarnation, let at):
            if workers[profile.name] == nil { insertName(profile.name) }
            // Re-joining replaces the profile, offered roles and address and forgets an earlier assignment:
            // a restarted worker may come back with a different `--role`, declared profile or port.
            workers[profile.name] = Worker(profile: profile, offeredRoles: roles.uniqueSorted(), assignedRoles: nil,
                                           status: .active, joinedAt: at, lastSeen: at,
                                           load: WorkerLoad(), address: address, modelFingerprint: fingerprint,
                                           incarnation: incarnation)
        case .roleAssigned(let name, let roles, _, _):
            workers[name]?.assignedRoles = roles.uniqueSorted()
        case .heartbeat(let name, let load, let draining, let at):
            guard var worker = workers[name] else { return }
            worker.load = load
            worker.lastSeen = max(worker.lastSeen, at)
            worker.status = draining ? .draining : .active
            worker.pending = 0
            workers[name] = worker
        case .heartbeatLost(let name, _):
            workers[name]?.status = .lost
        case .left(let name, _):
            if workers.removeValue(forKey: name) != nil, let index = names.firstIndex(of: name) {
                names.remove(at: index)
            }
        }
    }

    private mutating func insertName(_ name: String) {
        var low = 0, high = names.count
        while low < high {
            let middle = (low + high) / 2
            if names[middle] < name { low = middle + 1 } else { high = middle }
        }
        names.insert(name, at: low)
    }

    /// `heartbeatLost` events for every active or draining worker not seen for longer than `timeout`
    /// seconds at `now`. Pure: the caller appends them to the log and applies them.
    public func expire(now: Date, timeout: TimeInterval) -> [MembershipEvent] {
        sortedWorkers
            .filter { $0.status != .lost && now.timeIntervalSince($0.lastSeen) > timeout }
            .map { .heartbeatLost(worker: $0.name, at: now) }
    }

    /// Counts a request placed on `pair` against its workers until their next heartbeat (see
    /// `Worker.pending`). A worker doing both halves counts twice: it prefills and decodes.
    public mutating func recordPlacement(_ pair: WorkerPair) {
        placements &+= 1
        for name in [pair.prefill, pair.decode].compactMap({ $0 }) {
            workers[name]?.pending += 1
        }
    }

    /// Uncounts a request placed on `pair` that has started (its first token is out) or ended: it no longer waits
    /// in its workers' queues. Used by routers, which otherwise only learn of it from the next heartbeat. Clamped at
    /// 0: when a heartbeat already reported the request, this may uncount a newer one for a moment.
    public mutating func releasePlacement(_ pair: WorkerPair) {
        for name in [pair.prefill, pair.decode].compactMap({ $0 }) where (workers[name]?.pending ?? 0) > 0 {
            workers[name]?.pending -= 1
        }
    }

    /// Forgets the reported queue depths (keeping what was placed since): what a router does when its snapshot's
    /// loads are too old to describe the workers, so that its own placements are the whole queue it assumes.
    public mutating func forgetReportedQueues() {
        for name in Array(workers.keys) { workers[name]?.load.queueDepth = 0 }
    }

    /// Keeps the requests `earlier` counted as placed on each worker (`Worker.pending`) when this state has
    /// no newer news of that worker: the same process, and no heartbeat after the one `earlier` knew. A router
    /// calls this on each snapshot from placement, so the work it has itself just assigned keeps counting
    /// until a heartbeat that includes it arrives.
    /// `round_robin`'s turn (`placements`) carries over too: it is the router's own count.
    public mutating func carryPending(from earlier: ClusterState) {
        placements = earlier.placements
        for (name, old) in earlier.workers where old.pending > 0 {
            guard let new = workers[name], new.incarnation == old.incarnation, new.lastSeen <= old.lastSeen else { continue }
            workers[name]?.pending = max(new.pending, old.pending)
        }
    }

    /// Treats every member that is not lost as seen at `now`. A restarted placement service calls this
    /// after replaying its log: its workers kept running and get one heartbeat timeout to check in,
    /// instead of all being declared lost at the first expiry check.
    public mutating func markSeen(at now: Date) {
        for name in Array(workers.keys) where workers[name]?.status != .lost {
            let seen = workers[name]?.lastSeen ?? now
            workers[name]?.lastSeen = max(seen, now)
        }
    }

    /// The model fingerprint of the cluster as `worker` would join it: the one the other members that are
    /// not lost recorded, or nil when there are none (the first worker sets it). Lost members do not
    /// count, so a cluster can move to another model once the old workers are gone.
    public func modelFingerprint(excluding worker: String) -> String? {
        sortedWorkers.first { $0.name != worker && $0.status != .lost && $0.modelFingerprint != nil }?.modelFingerprint
    }

    /// The shortest event list that rebuilds this state (used to compact the log).
    public var snapshotEvents: [MembershipEvent] {
        sortedWorkers.flatMap { worker -> [MembershipEvent] in
            var events: [MembershipEvent] = [
                .joined(profile: worker.profile, roles: worker.offeredRoles, address: worker.address,
                        modelFingerprint: worker.modelFingerprint, incarnation: worker.incarnation, at: worker.joinedAt),
            ]
            if let assigned = worker.assignedRoles {
                events.append(.roleAssigned(worker: worker.name, roles: assigned, at: worker.joinedAt))
            }
            if worker.load != WorkerLoad() || worker.lastSeen != worker.joinedAt || worker.status == .draining {
                events.append(.heartbeat(worker: worker.name, load: worker.load, draining: worker.status == .draining,
                                         at: worker.lastSeen))
            }
            if worker.status == .lost { events.append(.heartbeatLost(worker: worker.name, at: worker.lastSeen)) }
            return events
        }
    }
}

extension Array where Element == WorkerRole {
    func uniqueSorted() -> [WorkerRole] { Array(Set(self)).sorted() }
}
