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

        public var name: String { profile.name }
        /// The roles placement uses: assigned ones when assigned, else offered ones.
        public var roles: [WorkerRole] { assignedRoles ?? offeredRoles }
    }

    /// Members by name (active and lost; workers that left are removed).
    public private(set) var workers: [String: Worker] = [:]

    public init() {}

    /// Members sorted by name: a stable order for output and tie-breaking.
    public var sortedWorkers: [Worker] { workers.values.sorted { $0.name < $1.name } }

    /// The state after `event`.
    public func applying(_ event: MembershipEvent) -> ClusterState {
        var next = self
        next.apply(event)
        return next
    }

    /// Applies `event` in place.
    public mutating func apply(_ event: MembershipEvent) {
        switch event {
        case .joined(let profile, let roles, let at):
            // Re-joining replaces the profile and offered roles and forgets an earlier assignment:
            // a restarted worker may come back with a different `--role` or declared profile.
            workers[profile.name] = Worker(profile: profile, offeredRoles: roles.uniqueSorted(), assignedRoles: nil,
                                           status: .active, joinedAt: at, lastSeen: at,
                                           load: WorkerLoad())
        case .roleAssigned(let name, let roles, _):
            workers[name]?.assignedRoles = roles.uniqueSorted()
        case .heartbeat(let name, let load, let at):
            guard var worker = workers[name] else { return }
            worker.load = load
            worker.lastSeen = max(worker.lastSeen, at)
            worker.status = .active
            workers[name] = worker
        case .heartbeatLost(let name, _):
            workers[name]?.status = .lost
        case .left(let name, _):
            workers[name] = nil
        }
    }

    /// `heartbeatLost` events for every active worker not seen for longer than `timeout` seconds at
    /// `now`. Pure: the caller appends them to the log and applies them.
    public func expire(now: Date, timeout: TimeInterval) -> [MembershipEvent] {
        sortedWorkers
            .filter { $0.status == .active && now.timeIntervalSince($0.lastSeen) > timeout }
            .map { .heartbeatLost(worker: $0.name, at: now) }
    }

    /// The shortest event list that rebuilds this state (used to compact the log).
    public var snapshotEvents: [MembershipEvent] {
        sortedWorkers.flatMap { worker -> [MembershipEvent] in
            var events: [MembershipEvent] = [.joined(profile: worker.profile, roles: worker.offeredRoles, at: worker.joinedAt)]
            if let assigned = worker.assignedRoles {
                events.append(.roleAssigned(worker: worker.name, roles: assigned, at: worker.joinedAt))
            }
            if worker.load != WorkerLoad() || worker.lastSeen != worker.joinedAt {
                events.append(.heartbeat(worker: worker.name, load: worker.load, at: worker.lastSeen))
            }
            if worker.status == .lost { events.append(.heartbeatLost(worker: worker.name, at: worker.lastSeen)) }
            return events
        }
    }
}

extension Array where Element == WorkerRole {
    func uniqueSorted() -> [WorkerRole] { Array(Set(self)).sorted() }
}
