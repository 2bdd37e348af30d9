import Foundation
import Logging
import Placement

/// The placement service's bookkeeping: who is in the cluster (the membership log plus live heartbeats),
/// the policy in force, and the choice of workers for each request. The HTTP layer (`PlacementService`)
/// only decodes, calls one method here and encodes.
///
/// What is durable: joins (with address and model fingerprint), role assignments, losses, departures and
/// heartbeats that change a worker's status (back from lost, starting or stopping to drain) are appended
/// to the log and fsync'd before the call returns. Plain heartbeats only update the in-memory load: load
/// changes every second and is worthless after a restart.
///
/// An actor: every request is a short, non-blocking critical section, except the appends' fsync.
public actor PlacementRegistry {
    private let log: MembershipLog
    /// The log's fold plus heartbeat loads and optimistic in-flight counts (`ClusterState.Worker.pending`).
    private var state: ClusterState
    private var policy: PlacementPolicy
    private var policyLoadedAt: Date
    /// Until then, no worker restored from the log is marked lost: a worker whose placement service went away
    /// retries at most every `WorkerAgent.maximumRetryInterval`, so a heartbeat timeout shorter than that would
    /// lose every restored worker across a restart.
    private let restartGraceUntil: Date
    private let restored: Set<String>
    private var policyError: String?
    /// The latest membership changes, oldest first, for the status (the log itself is not re-read).
    private var recentEvents: [ClusterStatus.Event] = []
    private var random: SeededGenerator
    private let compactAfterEvents: Int
    private let compactAfterBytes: Int
    private let heartbeatIntervalLimit: Duration
    private let clock: @Sendable () -> Date
    private let logger: Logger
    /// Each worker's context length as it last registered (not logged: workers that do not register again
    /// after a restart leave `choose` with only the absolute cap).
    private var contextLengths: [String: Int] = [:]
    /// Membership version pushed to routers: grows with every logged change and policy install. It starts at the
    /// service's start time in milliseconds, so a restarted service continues above its former self's versions
    /// (as long as the clock does not go back).
    public private(set) var version: UInt64
    /// Grows with every change routers should hear about, loads included.
    public private(set) var revision: UInt64 = 1
    /// This placement process, so routers can tell a restarted service (whose versions start again).
    public nonisolated let incarnation = WorkerIncarnation.now().description
    /// Which block hashes each worker's prefix caches hold, from the KV event batches in their heartbeats. Not logged:
    /// a restarted service asks every worker for a reset batch.
    public private(set) var prefixIndex = PrefixIndex()
    /// The batches received, in order, for the routers' watch streams to forward (their replicas apply the very same
    /// batches); the oldest are dropped past `prefixLogLimit` batches, and a stream that fell behind them starts over
    /// from the whole index.
    private var prefixLog: [WorkerKVEvents] = []
    /// Batches ever dropped from the front of `prefixLog`: the position of `prefixLog[i]` is `prefixLogStart + i + 1`.
    private var prefixLogStart: UInt64 = 0
    /// Hashes named by the batches in `prefixLog`.
    private var prefixLogHashes = 0
    /// Most batches, and most hashes in them, kept for the watch streams (a few MiB at most).
    public static let prefixLogLimit = (batches: 4096, hashes: 1 << 19)

    /// Opens (creating when missing) and replays the membership log at `logPath`, compacting it when it
    /// holds more than `compactAfterEvents` events. Replayed workers that were not lost count as seen now:
    /// they get one heartbeat timeout to check in with the restarted service, and nobody is marked lost before
    /// `WorkerAgent.maximumRetryInterval` has passed (a worker may be waiting that long to retry).
    ///
    /// - Parameters:
    ///   - heartbeatInterval: the interval workers are told to heartbeat at; shortened to a third of the
    ///     policy's heartbeat timeout when that is smaller.
    ///   - clock: the time source (tests may pass their own).
    public init(
        logPath: String, policy: PlacementPolicy, policyLoadedAt: Date, heartbeatInterval: Duration = .seconds(1),
        compactAfterEvents: Int = 10_000, compactAfterBytes: Int = 16 << 20, logger: Logger,
        clock: @escaping @Sendable () -> Date = { Date() }
    ) throws(ClusterError) {
        let log: MembershipLog
        do {
            log = try MembershipLog(path: logPath)
        } catch {
            throw ClusterError(.internalError, "cannot open the membership log: \(error)", cause: error)
        }
        for warning in log.warnings { logger.warning("\(warning)") }
        // Damaged lines are rewritten away at once; otherwise the log is compacted past either bound.
        if log.damagedRecords > 0 || log.eventCount > compactAfterEvents || log.byteCount > compactAfterBytes {
            do {
                let before = log.eventCount
                try log.compact()
                logger.info("compacted the membership log \(logPath) from \(before) to \(log.eventCount) events")
            } catch {
                logger.warning("could not compact the membership log: \(error)")
            }
        }
        self.log = log
        var state = log.state
        state.markSeen(at: clock())
        self.state = state
        restartGraceUntil = clock().addingTimeInterval(WorkerAgent.maximumRetryInterval / .seconds(1))
        restored = Set(state.workers.keys)
        self.policy = policy
        self.policyLoadedAt = policyLoadedAt
        self.random = SeededGenerator(seed: policy.balancing.seed ?? UInt64(truncatingIfNeeded: Int64(clock().timeIntervalSince1970 * 1e6)))
        self.compactAfterEvents = compactAfterEvents
        self.compactAfterBytes = compactAfterBytes
        self.version = UInt64(max(1, clock().timeIntervalSince1970 * 1000))
        self.heartbeatIntervalLimit = heartbeatInterval
        self.clock = clock
        self.logger = logger
        if !state.workers.isEmpty {
            logger.info("membership log \(logPath): \(state.workers.count) workers known (\(state.sortedWorkers.map(\.name).joined(separator: ", ")))")
        }
    }

    /// The policy in force and when it was loaded.
    public var currentPolicy: (policy: PlacementPolicy, loadedAt: Date) { (policy, policyLoadedAt) }

    /// The members as this service sees them now.
    public var members: ClusterState { state }

    /// How often workers should heartbeat: the configured interval, or a third of the heartbeat timeout
    /// when that is shorter (so one late heartbeat does not make a worker lost).
    public var heartbeatInterval: Duration {
        min(heartbeatIntervalLimit, .milliseconds(max(50, Int(policy.membership.heartbeatTimeoutSeconds * 1000 / 3))))
    }

    // MARK: Requests

    /// Records a worker joining (or re-joining) and assigns it the offered roles the policy allows.
    /// Throws `.invalidArgument` for a bad name or address, `.conflict` when its model differs from the
    /// cluster's (the other members that are not lost).
    public func register(_ request: RegisterRequest) throws(ClusterError) -> RegisterResponse {
        let name = request.profile.name
        guard Self.isValidName(name) else {
            throw ClusterError(.invalidArgument, "worker name '\(name)' is invalid: use 1 to 128 letters, digits, '.', '_' or '-'")
        }
        guard !request.address.host.isEmpty, (1...65_535).contains(request.address.port) else {
            throw ClusterError(.invalidArgument, "worker \(name) gave an invalid address \(request.address.host):\(request.address.port)")
        }
        guard !request.modelFingerprint.isEmpty, request.modelFingerprint.utf8.count <= 256 else {
            throw ClusterError(.invalidArgument, "worker \(name) gave no model fingerprint, or one over 256 bytes")
        }
        guard request.address.host.utf8.count <= 255, request.address.hostID.utf8.count <= 128 else {
            throw ClusterError(.invalidArgument, "worker \(name) gave a host name over 255 bytes or a host id over 128")
        }
        do { _ = try request.profile.validated() } catch {
            throw ClusterError(.invalidArgument, error.message, cause: error)
        }
        if let context = request.contextLength, !(1...ChooseRequest.maximumPromptTokens).contains(context) {
            throw ClusterError(
                .invalidArgument, "worker \(name) gave context_length \(context), outside 1...\(ChooseRequest.maximumPromptTokens)")
        }
        // The cluster's fingerprint is not named: a caller who got it wrong learns nothing to retry with.
        if let cluster = state.modelFingerprint(excluding: name), cluster != request.modelFingerprint {
            throw ClusterError(.conflict, "worker \(name) serves model \(request.modelFingerprint), which is not the "
                + "cluster's model: every worker must load the same model file")
        }
        try refuseStale(name: name, incarnation: request.incarnation, doing: "registration")
        let now = clock()
        let assignment = Placement.assignRoles(for: request.profile, offered: request.roles, policy: policy)
        let address = request.address
        try append([
            .joined(profile: request.profile, roles: request.roles, address: address,
                    modelFingerprint: request.modelFingerprint, incarnation: request.incarnation, at: now),
            .roleAssigned(worker: name, roles: assignment.roles, note: assignment.note, at: now),
        ])
        contextLengths[name] = request.contextLength
        let roles = assignment.roles.map(\.rawValue).joined(separator: ", ")
        logger.info("\(name) joined from \(address), roles: \(roles.isEmpty ? "none" : roles)\(assignment.note.map { " (\($0))" } ?? "")")
        return RegisterResponse(name: name, assignedRoles: assignment.roles,
                                heartbeatIntervalMs: Int(heartbeatInterval / .milliseconds(1)))
    }

    /// Records a worker's load and applies its KV event batch. Throws `.notFound` when the worker is not a member (it
    /// should register). The answer asks for a reset batch when the index holds nothing trusted for the worker.
    @discardableResult
    public func heartbeat(_ request: HeartbeatRequest) throws(ClusterError) -> HeartbeatResponse {
        guard let worker = state.workers[request.name] else {
            throw ClusterError(.notFound, "worker \(request.name) is not registered")
        }
        try refuseStale(name: request.name, incarnation: request.incarnation, doing: "heartbeat")
        if let sender = request.incarnation, let registered = worker.incarnation, sender != registered {
            // A newer process than the registered one: it must register (its address may differ).
            throw ClusterError(.notFound, "worker \(request.name) is registered as process \(registered), not \(sender)")
        }
        let load = request.load
        guard load.queueDepth >= 0, load.activeSequences >= 0, load.freeKVBlocks >= 0, (load.totalKVBlocks ?? 0) >= 0 else {
            throw ClusterError(.invalidArgument, "heartbeat of \(request.name) has a negative load figure")
        }
        if let batch = request.kvEvents, batch.hashCount > KVEventBatch.maximumHashes {
            throw ClusterError(.invalidArgument, "heartbeat of \(request.name) carries \(batch.hashCount) block hashes, over \(KVEventBatch.maximumHashes)")
        }
        let event = MembershipEvent.heartbeat(worker: request.name, load: load, draining: request.draining, at: clock())
        let next: ClusterState.Status = request.draining ? .draining : .active
        if worker.status != next {
            try append([event])
            logger.info("\(request.name) is \(next.rawValue)\(worker.status == .lost ? " again" : "")")
        } else {
            state.apply(event)
            revision += 1
        }
        if let batch = request.kvEvents {
            if case .dropped(let reason) = prefixIndex.apply(batch, from: request.name) {
                logger.info("prefix index: dropped the entries of \(request.name) until it sends a reset batch: \(reason)")
            }
            prefixLog.append(WorkerKVEvents(worker: request.name, batch: batch))
            prefixLogHashes += batch.hashCount
            var excess = 0
            while excess < prefixLog.count - 1,
                  prefixLog.count - excess > Self.prefixLogLimit.batches || prefixLogHashes > Self.prefixLogLimit.hashes {
                prefixLogHashes -= prefixLog[excess].batch.hashCount
                excess += 1
            }
            if excess > 0 {
                prefixLog.removeFirst(excess)
                prefixLogStart += UInt64(excess)
            }
        }
        return HeartbeatResponse(resetKVEvents: prefixIndex.workers[request.name] == nil)
    }

    /// Removes a worker. Throws `.notFound` when it is not a member.
    public func leave(_ request: LeaveRequest) throws(ClusterError) {
        guard state.workers[request.name] != nil else {
            throw ClusterError(.notFound, "worker \(request.name) is not registered")
        }
        try refuseStale(name: request.name, incarnation: request.incarnation, doing: "departure")
        try append([.left(worker: request.name, at: clock())])
        logger.info("\(request.name) left")
    }

    /// Picks the workers for a prompt of `promptTokens` tokens with the current policy, and counts the
    /// request against them until their next heartbeat. Throws `.overloaded` (429) or `.unavailable` (503)
    /// with the policy's reason when the request cannot be placed now.
    /// `excluding` names workers the caller saw fail this request: they are left out as if the policy's pools
    /// excluded them.
    public func choose(promptTokens: Int, excluding: [String] = [], prompt: [Int32]? = nil) throws(ClusterError) -> ChooseResponse {
        guard promptTokens <= ChooseRequest.maximumPromptTokens else {
            throw ClusterError(.invalidArgument, "prompt_tokens \(promptTokens) exceeds \(ChooseRequest.maximumPromptTokens)")
        }
        let longest = state.workers.keys.compactMap { contextLengths[$0] }.max()
        if let longest, promptTokens >= longest {
            throw ClusterError(
                .invalidArgument,
                "prompt_tokens \(promptTokens) leaves no room in the longest worker context (\(longest) tokens)")
        }
        let decision: Decision
        var policy = self.policy
        policy.prefill.excludeWorkers += excluding
        policy.decode.excludeWorkers += excluding
        let prefix = try prefixMatch(promptTokens: promptTokens, prompt: prompt)
        do {
            decision = try Placement.choose(promptTokens: promptTokens, state: state, policy: policy, prefix: prefix, rng: &random)
        } catch {
            throw ClusterError(.invalidArgument, error.message, cause: error)
        }
        switch decision.admission {
        case .reject(let reason, let retryAfter):
            throw ClusterError(.overloaded, reason, retryAfterSeconds: retryAfter)
        case .unavailable(let reason):
            throw ClusterError(.unavailable, reason)
        case .admit(let pair):
            let decode = try endpoint(pair.decode)
            let prefill = try pair.prefill.map { name throws(ClusterError) in try endpoint(name) }
            state.recordPlacement(pair, promptTokens: promptTokens)
            return ChooseResponse(mode: prefill == nil ? .decodeOnly : .disaggregated, prefill: prefill, decode: decode,
                                  explanation: decision.explainText(policy: policy),
                                  maxMigrations: policy.resume.maxMigrations)
        }
    }

    /// What `choose` would decide for a prompt of `promptTokens` tokens now, and why. Changes nothing: no
    /// load is counted against the workers and the balancing random state does not advance, so asking never
    /// sways the next real choice.
    /// With the prompt's token ids, each candidate's score counts what its caches hold of it (placement's index).
    public func explain(promptTokens: Int, prompt: [Int32]? = nil) throws(ClusterError) -> ExplainResponse {
        var rng = random
        let prefix = try prefixMatch(promptTokens: promptTokens, prompt: prompt)
        do {
            let decision = try Placement.choose(promptTokens: promptTokens, state: state, policy: policy, prefix: prefix, rng: &rng)
            return ExplainResponse(decision: decision, text: decision.explainText(policy: policy))
        } catch {
            throw ClusterError(.invalidArgument, error.message, cause: error)
        }
    }

    /// Membership changes kept for the status.
    public static let recentEventLimit = 50

    /// The cluster as `baton cluster status` shows it.
    public func status() -> ClusterStatus {
        let workers = state.sortedWorkers.map { worker in
            var transports = ["tls-h2"]
            if !(worker.profile.transports.sharedMemoryHostID ?? "").isEmpty { transports.append("shared-memory") }
            if !worker.profile.transports.rdmaDevices.isEmpty { transports.append("rdma") }
            var load = worker.load
            load.queueDepth += worker.pending
            return ClusterStatus.Worker(
                name: worker.name, status: worker.status.rawValue, offeredRoles: worker.offeredRoles,
                assignedRoles: worker.roles,
                address: worker.address,
                profile: worker.profile, load: load, lastSeen: worker.lastSeen, transports: transports,
                incarnation: worker.incarnation,
                indexedBlocks: prefixIndex.workers[worker.name].map { $0.decode.count + $0.prefill.count })
        }
        return ClusterStatus(workers: workers, policyFile: policy.source ?? "(built-in defaults)",
                             policyLoadedAt: policyLoadedAt, policyError: policyError, events: log.eventCount,
                             recentEvents: recentEvents)
    }

    /// The membership and policy as routers receive them on the watch stream, with the KV event batches received
    /// after position `prefixSince` (nil, or a position whose batches were dropped already: the whole index).
    public func snapshot(prefixSince: UInt64? = nil) -> MembershipSnapshot {
        let position = prefixLogStart + UInt64(prefixLog.count)
        let update: PrefixIndexUpdate
        if let since = prefixSince, since >= prefixLogStart, since <= position {
            update = PrefixIndexUpdate(full: false, batches: Array(prefixLog[Int(since - prefixLogStart)...]), position: position)
        } else {
            update = PrefixIndexUpdate(full: true, batches: prefixIndex.resetBatches, position: position)
        }
        return MembershipSnapshot(version: version, placementIncarnation: incarnation, policy: policy,
                                  events: state.snapshotEvents, sentAt: clock(), prefix: update)
    }

    /// What a watch stream should send next, given what it sent (`version`, `revision`, the prefix position; nil
    /// before its first snapshot): the snapshot at once when the membership changed, and when only loads or caches
    /// changed, once `loadsDue` (the stream's load interval passed). nil when there is nothing to send.
    public func watchUpdate(sentVersion: UInt64, sentRevision: UInt64, loadsDue: Bool, sentPrefix: UInt64? = nil)
        -> (snapshot: MembershipSnapshot, revision: UInt64)?
    {
        guard version != sentVersion || (revision != sentRevision && loadsDue) else { return nil }
        return (snapshot(prefixSince: sentPrefix), revision)
    }

    // MARK: Maintenance

    /// Marks workers silent for longer than the policy's heartbeat timeout as lost (logged), and compacts
    /// the log when it has grown past the limit. Returns the workers marked lost.
    @discardableResult
    public func expire() -> [String] {
        let now = clock()
        let inGrace = now < restartGraceUntil
        let events = state.expire(now: now, timeout: policy.membership.heartbeatTimeoutSeconds)
            .filter { !(inGrace && restored.contains($0.worker)) }
        if !events.isEmpty {
            do {
                try append(events)
                for event in events {
                    logger.warning("\(event.worker): no heartbeat for \(ConfigNumber.text(policy.membership.heartbeatTimeoutSeconds)) s, marked lost")
                }
            } catch {
                // Keep serving: the loss is applied in memory so choices avoid the worker anyway.
                for event in events { state.apply(event) }
                bump()
                remember(events)
                forgetUntrustedPrefixes()
                logger.error("\(error)")
            }
        }
        if log.eventCount > compactAfterEvents || log.byteCount > compactAfterBytes {
            do {
                try log.compact()
            } catch {
                logger.warning("could not compact the membership log: \(error)")
            }
        }
        return events.map(\.worker)
    }

    /// Records that reloading the policy file failed (shown in the status until a load succeeds).
    public func recordPolicyFailure(_ message: String) {
        policyError = message
    }

    /// Puts `newPolicy` in force (unless a policy loaded later is already in force) and re-assigns every
    /// member's roles under it, logging the assignments that change. Requests see either the old policy or
    /// the new one, never a mix.
    /// - Returns: whether the policy was installed.
    @discardableResult
    public func install(policy newPolicy: PlacementPolicy, loadedAt: Date) -> Bool {
        guard loadedAt >= policyLoadedAt else { return false }
        policy = newPolicy
        policyLoadedAt = loadedAt
        policyError = nil
        bump()
        if let seed = newPolicy.balancing.seed { random = SeededGenerator(seed: seed) }
        var events: [MembershipEvent] = []
        let now = clock()
        for worker in state.sortedWorkers {
            let assignment = Placement.assignRoles(for: worker.profile, offered: worker.offeredRoles, policy: newPolicy)
            if assignment.roles != worker.assignedRoles {
                events.append(.roleAssigned(worker: worker.name, roles: assignment.roles, note: assignment.note, at: now))
                let roles = assignment.roles.map(\.rawValue).joined(separator: ", ")
                logger.info("\(worker.name) now has roles: \(roles.isEmpty ? "none" : roles)\(assignment.note.map { " (\($0))" } ?? "")")
            }
        }
        do {
            try append(events)
        } catch {
            for event in events { state.apply(event) }
            bump()
            remember(events)
            logger.error("\(error)")
        }
        return true
    }

    // MARK: Helpers

    private func prefixMatch(promptTokens: Int, prompt: [Int32]?) throws(ClusterError) -> PrefixMatch {
        guard let prompt else { return .none }
        guard prompt.count == promptTokens else {
            throw ClusterError(.invalidArgument, "prompt has \(prompt.count) token ids, but prompt_tokens is \(promptTokens)")
        }
        return PrefixMatch(prompt: prompt, index: prefixIndex)
    }

    private func append(_ events: [MembershipEvent]) throws(ClusterError) {
        guard !events.isEmpty else { return }
        do {
            try log.append(events)
        } catch {
            throw ClusterError(.internalError, "cannot record membership: \(error)", cause: error)
        }
        for event in events { state.apply(event) }
        bump()
        remember(events)
        forgetUntrustedPrefixes()
    }

    /// Drops the prefix entries of workers that left, were lost or restarted (see `PrefixIndex.reconcile`).
    private func forgetUntrustedPrefixes() {
        for name in prefixIndex.reconcile(with: state) {
            logger.info("prefix index: dropped the entries of \(name) (lost, departed or restarted)")
        }
    }

    private func bump() {
        version += 1
        revision += 1
    }

    /// Refuses (409, logged) a request from a process older than the one registered under `name`: a former
    /// process of a restarted worker must not overwrite or remove its successor. A malformed incarnation is a 400.
    private func refuseStale(name: String, incarnation text: String?, doing what: String) throws(ClusterError) {
        guard let text else { return }
        guard let sender = WorkerIncarnation(text) else {
            throw ClusterError(.invalidArgument, "worker \(name) gave an invalid incarnation '\(text)' (expected <ms since 1970>-<16 hex digits>)")
        }
        guard let registeredText = state.workers[name]?.incarnation, let registered = WorkerIncarnation(registeredText),
              sender < registered else { return }
        logger.warning("refused a stale \(what) of \(name): it comes from process \(sender), which started before the registered process \(registered)")
        throw ClusterError(.conflict, "stale \(what): worker \(name) is registered by a newer process (incarnation \(registered)); "
            + "this process (incarnation \(sender)) has been replaced")
    }

    private func remember(_ events: [MembershipEvent]) {
        for event in events {
            let detail: String
            switch event {
            case .joined(_, let roles, let address, _, _, _):
                detail = "offers \(Self.roleList(roles))" + (address.map { " at \($0)" } ?? "")
            case .roleAssigned(_, let roles, let note, _):
                detail = "roles \(Self.roleList(roles))" + (note.map { " (\($0))" } ?? "")
            case .heartbeat(_, _, let draining, _):
                detail = draining ? "draining" : "active"
            case .heartbeatLost:
                detail = "no heartbeat for \(ConfigNumber.text(policy.membership.heartbeatTimeoutSeconds)) s"
            case .left:
                detail = ""
            }
            recentEvents.append(ClusterStatus.Event(time: event.time, worker: event.worker, event: event.kind, detail: detail))
        }
        if recentEvents.count > Self.recentEventLimit { recentEvents.removeFirst(recentEvents.count - Self.recentEventLimit) }
    }

    private static func roleList(_ roles: [WorkerRole]) -> String {
        roles.isEmpty ? "none" : roles.map(\.rawValue).joined(separator: ", ")
    }

    private func endpoint(_ name: String) throws(ClusterError) -> WorkerEndpoint {
        guard let address = state.workers[name]?.address else {
            throw ClusterError(.unavailable, "worker \(name) has no known address; it must register again")
        }
        return WorkerEndpoint(name: name, address: address)
    }

    static func isValidName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }
}

extension ClusterError.Code {
    /// The request contradicts the cluster's state (HTTP 409), e.g. a worker serving another model.
    public static let conflict = ClusterError.Code("conflict")
    /// The request names something the service does not know (HTTP 404), e.g. an unregistered worker.
    public static let notFound = ClusterError.Code("not found")
}

/// Numbers in log messages: integers plainly, others with up to two decimals.
enum ConfigNumber {
    static func text(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.2f", value)
    }
}
