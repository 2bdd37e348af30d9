import Foundation
import Placement

/// A discrete-event simulation of a Baton cluster serving a `bench serve` workload: the router chooses workers with
/// the real `MembershipView.choose` (so `Placement.choose` and the policy file decide exactly as in the cluster), and
/// workers spend the times the ``CostModel`` gives for their device profiles.
///
/// What is modelled, as the processes do it:
/// - **Router.** Each request is placed when it arrives. A refusal (429) waits in the router's FIFO admission
///   queue under `admission.policy: queue` (up to `max_waiting`, 504 after `max_wait_seconds`; the head retries when
///   a request starts, at every snapshot and every 250 ms) or fails under `ttft_target`. The router counts its own
///   placements (`pending`) until the request's first token, as routers do.
/// - **Placement.** Every `heartbeat_interval_ms` each worker reports its load (queue, active sequences, free KV
///   blocks, recent TTFT and TPOT) and the router installs the new snapshot.
/// - **Prefill worker** (`PrefillBatcher`): prompts admitted in arrival order while its KV cache holds them whole;
///   one lane runs passes packed with whole prompts up to the chunk size (a longer prompt gets passes of its own);
///   a prompt's blocks are freed when its hand-off ends.
/// - **Decode worker** (`DecodeScheduler`): a request is admitted in arrival order when the blocks of prompt +
///   max tokens fit; a local prompt (decode-only mode) runs on the lane at admission, one pass each, and its first
///   token comes from that pass; a handed-off prompt's KV crosses the link once the prefill is done and the blocks
///   are reserved, and its first token is sampled at the next step boundary. Continuous batching: every step takes
///   up to `max_batch` active sequences (in turns when there are more) and gives each one token.
/// - A worker with both roles has one lane: hand-off prefills, local prompts and decode steps take turns on it.
///
/// Not modelled: tokenization and HTTP time, failures and migrations, a second router.
public struct ClusterSimulator {
    public struct Options: Sendable {
        /// Prompt tokens per word of a `.words` prompt (or whitespace-separated word of a `.text` one).
        public var tokensPerWord: Double = 1
        /// Tokens every prompt adds for the chat template.
        public var templateTokens: Int = 0
        /// Seed of the placement's random generator (`power_of_two`); the policy's `balancing.seed` wins when set.
        public var seed: UInt64 = 1
        public var slo: ServeSLO?
        /// Link used between two workers with the same host id (shared-memory hand-off: memcpy speed).
        public var sharedMemoryLink = LinkProfile(bandwidthGBps: 10, latencySeconds: 0)

        public init() {}
    }

    /// One request and where it is.
    public struct Arrival: Sendable, Equatable {
        /// Seconds after the start.
        public var time: Double
        public var request: ServeWorkload.Request

        public init(time: Double, request: ServeWorkload.Request) {
            self.time = time
            self.request = request
        }
    }

    public struct Result: Sendable {
        public var records: [RequestRecord]
        public var summary: LevelSummary
        /// Requests that ran decode-only (no hand-off).
        public var decodeOnly: Int
        /// Requests that waited in the router's admission queue at least once.
        public var queuedAtRouter: Int
        /// Simulated events processed, and the wall-clock seconds the simulation took.
        public var events: Int
        public var wallSeconds: Double
        /// Busy share of each worker's lane over the run, by worker name.
        public var busyShare: [String: Double]
    }

    let cluster: SimulatedCluster
    let policy: PlacementPolicy
    let costs: CostModel
    let options: Options

    public init(cluster: SimulatedCluster, policy: PlacementPolicy, costs: CostModel, options: Options = Options()) {
        self.cluster = cluster
        self.policy = policy
        self.costs = costs
        self.options = options
    }

    /// Arrival times for `workload`: its trace timestamps when it has them, else Poisson arrivals at `rate`.
    public static func arrivals(for workload: ServeWorkload, rate: Double?, seed: UInt64) throws(BenchmarkError) -> [Arrival] {
        if workload.requests.allSatisfy({ $0.timestamp != nil }) {
            return workload.requests.map { Arrival(time: $0.timestamp!, request: $0) }
        }
        guard let rate, rate > 0, rate.isFinite else {
            throw BenchmarkError(.invalidArgument, "a synthetic workload needs a request rate (--rate)")
        }
        let times = ServeWorkload.poissonArrivals(count: workload.requests.count, rate: rate, seed: seed)
        return zip(times, workload.requests).map { Arrival(time: $0, request: $1) }
    }

    /// Prompt tokens of a request's own messages: its user message and, opening a conversation, the system message
    /// (history of earlier turns excluded).
    public func ownTokens(_ request: ServeWorkload.Request) -> Int {
        var words = request.system?.split(whereSeparator: \.isWhitespace).count ?? 0
        switch request.prompt {
        case .words(let n): words += n
        case .text(let text): words += text.split(whereSeparator: \.isWhitespace).count
        }
        return max(1, Int((Double(words) * options.tokensPerWord).rounded()) + options.templateTokens)
    }

    /// Runs `arrivals` to completion.
    public func run(_ arrivals: [Arrival]) throws(BenchmarkError) -> Result {
        var engine = try Engine(simulator: self, arrivals: arrivals)
        let started = ContinuousClock.now
        engine.run()
        let wall = started.duration(to: .now) / .seconds(1)
        return engine.result(wallSeconds: wall)
    }
}

// MARK: - The engine

extension ClusterSimulator {
    enum Event {
        case arrive(Int)
        case laneDone(Int)
        case handoffDone(Int)
        case heartbeat
        case routerTick
        /// A request started: the head of the router's queue may fit now.
        case routerRetry
    }

    final class Request {
        let index: Int
        let spec: ServeWorkload.Request
        let scheduled: Double
        var follows: Int?
        var followers: [Int] = []
        var promptTokens = 0
        var sent = 0.0
        var prefillWorker: Int?
        var decodeWorker = -1
        var pair: WorkerPair?
        var queuedSince: Double?
        var everQueued = false
        /// Prefill tokens done (hand-off prompts).
        var prefilled = 0
        var prefillDone = false
        var reserved = false
        var handoffStarted = false
        var tokens = 0
        var contextTokens: Int { promptTokens + tokens }
        var firstToken: Double?
        var lastToken = 0.0
        var itl: [Double] = []
        var finished: Double?
        var error: String?
        var blocksOnDecode = 0
        var blocksOnPrefill = 0

        init(index: Int, spec: ServeWorkload.Request, scheduled: Double) {
            self.index = index
            self.spec = spec
            self.scheduled = scheduled
        }
    }

    enum Work {
        case prefillPass([(request: Int, tokens: Int)])
        case localPrompt(Int)
        case step([Int])
    }

    final class Worker {
        let index: Int
        let spec: SimulatedCluster.Worker
        let name: String
        let kvTotal: Int
        var kvUsed = 0
        var work: Work?
        var busySeconds = 0.0
        /// Hand-off prompts to prefill, in arrival order: waiting for KV room, then admitted.
        var prefillWaiting: [Int] = []
        var prefillWaitingHead = 0
        var prefillAdmitted: [Int] = []
        /// Requests waiting for decode room, in arrival order.
        var decodeWaiting: [Int] = []
        var decodeWaitingHead = 0
        var localPrompts: [Int] = []
        var landed: [Int] = []
        var active: [Int] = []
        var turn = 0
        var recentTTFT = RecentMean()
        var recentTPOT = RecentMean()

        init(index: Int, spec: SimulatedCluster.Worker, costs: CostModel) {
            self.index = index
            self.spec = spec
            self.name = spec.profile.name
            let contextBlocks = costs.blocks(tokens: spec.context)
            let prefillOnly = !spec.roles.contains(.decode)
            kvTotal = spec.kvBlocks ?? (prefillOnly ? contextBlocks : spec.maxBatch * contextBlocks)
        }

        var isIdle: Bool { work == nil }
        var prefillQueued: Int { prefillWaiting.count - prefillWaitingHead }
        var decodeQueued: Int { decodeWaiting.count - decodeWaitingHead }
    }

    /// Mean of the last 16 values (what a worker reports as its recent TTFT or TPOT).
    struct RecentMean {
        private var values = [Double](repeating: 0, count: 16)
        private var count = 0
        private var next = 0
        mutating func add(_ value: Double) {
            values[next] = value
            next = (next + 1) % values.count
            count = min(count + 1, values.count)
        }
        var mean: Double? { count == 0 ? nil : values[0..<count].reduce(0, +) / Double(count) }
    }

    struct Engine {
        let simulator: ClusterSimulator
        var costs: CostModel { simulator.costs }
        var policy: PlacementPolicy { simulator.policy }
        var queue = EventQueue<Event>()
        var now = 0.0
        var requests: [Request] = []
        var workers: [Worker] = []
        var workerIndex: [String: Int] = [:]
        var placementState = ClusterState()
        var view = MembershipView()
        var version: UInt64 = 0
        var rng: SeededGenerator
        var routerQueue: [Int] = []
        var routerQueueHead = 0
        var tickScheduled = false
        var retryScheduled = false
        var unfinished = 0
        var events = 0
        var decodeOnly = 0

        init(simulator: ClusterSimulator, arrivals: [Arrival]) throws(BenchmarkError) {
            self.simulator = simulator
            rng = SeededGenerator(seed: simulator.policy.balancing.seed ?? simulator.options.seed)
            guard !arrivals.isEmpty else { throw BenchmarkError(.invalidArgument, "the workload has no requests") }
            var byIndex: [Int: Int] = [:]
            for (position, arrival) in arrivals.enumerated() {
                requests.append(Request(index: position, spec: arrival.request, scheduled: max(0, arrival.time)))
                byIndex[arrival.request.index] = position
            }
            for request in requests {
                guard let earlier = request.spec.follows.flatMap({ byIndex[$0] }) else { continue }
                request.follows = earlier
                requests[earlier].followers.append(request.index)
            }
            for (index, spec) in simulator.cluster.workers.enumerated() {
                let worker = Worker(index: index, spec: spec, costs: simulator.costs)
                workers.append(worker)
                workerIndex[worker.name] = index
                let at = Date(timeIntervalSince1970: 0)
                placementState.apply(.joined(profile: spec.profile, roles: spec.roles, address: nil, modelFingerprint: nil,
                                             incarnation: nil, at: at))
                let assigned = Placement.assignRoles(for: spec.profile, offered: spec.roles, policy: simulator.policy)
                placementState.apply(.roleAssigned(worker: worker.name, roles: assigned.roles, note: assigned.note, at: at))
            }
            unfinished = requests.count
            for request in requests where request.follows == nil { queue.schedule(.arrive(request.index), at: request.scheduled) }
            installSnapshot()
            queue.schedule(.heartbeat, at: simulator.cluster.heartbeatIntervalSeconds)
        }

        mutating func run() {
            while unfinished > 0, let (time, event) = queue.next() {
                now = time
                events += 1
                switch event {
                case .arrive(let r): arrive(r)
                case .laneDone(let w): laneDone(w)
                case .handoffDone(let r): handoffDone(r)
                case .heartbeat:
                    heartbeat()
                    if unfinished > 0 { queue.schedule(.heartbeat, at: now + simulator.cluster.heartbeatIntervalSeconds) }
                case .routerTick:
                    tickScheduled = false
                    retryRouterQueue()
                case .routerRetry:
                    retryScheduled = false
                    retryRouterQueue()
                }
            }
        }

        // MARK: Router

        mutating func arrive(_ r: Int) {
            let request = requests[r]
            request.sent = now
            request.promptTokens = simulator.ownTokens(request.spec)
            if let earlier = request.follows {
                // The history goes with every later turn: earlier prompts and the replies actually given.
                request.promptTokens += requests[earlier].promptTokens + requests[earlier].tokens
            }
            if routerQueueHead < routerQueue.count {
                enqueueAtRouter(r)
                return
            }
            if !place(r) { enqueueAtRouter(r) }
        }

        /// Tries to place `r`; false when it should wait in the router's queue.
        mutating func place(_ r: Int) -> Bool {
            let request = requests[r]
            let decision: Decision
            do {
                // The answer only: the simulator never shows why, and wording it for every worker would be most of
                // a placement's time on a large cluster.
                decision = try view.choose(promptTokens: request.promptTokens, at: Date(timeIntervalSince1970: now),
                                           explains: false, rng: &rng)
            } catch {
                fail(r, "placement: \(error.message)")
                return true
            }
            switch decision.admission {
            case .admit(let pair):
                dispatch(r, pair: pair)
                return true
            case .reject:
                if policy.admission.policy == .queue { return false }
                fail(r, "http 429")
                return true
            case .unavailable:
                fail(r, "http 503")
                return true
            }
        }

        mutating func enqueueAtRouter(_ r: Int) {
            guard routerQueue.count - routerQueueHead < policy.admission.maxWaiting else {
                fail(r, "http 429")
                return
            }
            requests[r].queuedSince = now
            requests[r].everQueued = true
            routerQueue.append(r)
            scheduleTick()
        }

        mutating func scheduleTick() {
            guard !tickScheduled, routerQueueHead < routerQueue.count else { return }
            tickScheduled = true
            queue.schedule(.routerTick, at: now + 0.25)
        }

        mutating func retryRouterQueue() {
            while routerQueueHead < routerQueue.count {
                let r = routerQueue[routerQueueHead]
                if let since = requests[r].queuedSince, now - since > policy.admission.maxWaitSeconds {
                    routerQueueHead += 1
                    fail(r, "http 504")
                    continue
                }
                guard place(r) else { break }
                routerQueueHead += 1
            }
            if routerQueueHead > 4096, routerQueueHead * 2 > routerQueue.count {
                routerQueue.removeFirst(routerQueueHead)
                routerQueueHead = 0
            }
            scheduleTick()
        }

        mutating func dispatch(_ r: Int, pair: WorkerPair) {
            let request = requests[r]
            request.queuedSince = nil
            request.pair = pair
            guard let d = workerIndex[pair.decode] else { return fail(r, "placement chose unknown worker \(pair.decode)") }
            request.decodeWorker = d
            if let prefill = pair.prefill, prefill != pair.decode, let p = workerIndex[prefill] {
                request.prefillWorker = p
                workers[p].prefillWaiting.append(r)
                kick(p)
            } else {
                decodeOnly += 1
            }
            workers[d].decodeWaiting.append(r)
            kick(d)
        }

        mutating func fail(_ r: Int, _ reason: String) {
            let request = requests[r]
            guard request.finished == nil else { return }
            request.error = reason
            request.finished = now
            finish(r)
        }

        /// Bookkeeping common to success and failure: a later turn of the conversation may go now.
        mutating func finish(_ r: Int) {
            unfinished -= 1
            for next in requests[r].followers {
                queue.schedule(.arrive(next), at: max(now, requests[next].scheduled))
            }
        }

        // MARK: Placement's snapshots

        mutating func heartbeat() {
            let at = Date(timeIntervalSince1970: now)
            for worker in workers {
                var load = WorkerLoad(
                    queueDepth: worker.prefillQueued + worker.decodeQueued + worker.localPrompts.count,
                    activeSequences: worker.active.count + worker.prefillAdmitted.count + worker.landed.count,
                    freeKVBlocks: worker.kvTotal - worker.kvUsed, totalKVBlocks: worker.kvTotal)
                load.recentTTFTMs = worker.recentTTFT.mean
                load.recentTPOTMs = worker.recentTPOT.mean
                placementState.apply(.heartbeat(worker: worker.name, load: load, draining: false, at: at))
            }
            installSnapshot()
            retryRouterQueue()
        }

        mutating func installSnapshot() {
            version += 1
            view.install(placementState, policy: policy, version: version, placementIncarnation: "simulation",
                         at: Date(timeIntervalSince1970: now))
        }

        // MARK: Workers

        /// Starts the lane of worker `w` on its next piece of work if it is idle.
        mutating func kick(_ w: Int) {
            let worker = workers[w]
            guard worker.isIdle else { return }
            admitDecode(worker)
            admitPrefill(worker)
            // Handed-off prompts whose KV landed: their first token is sampled now, between steps.
            for r in worker.landed {
                emitFirstToken(r, on: worker)
                if requests[r].finished == nil { worker.active.append(r) }
            }
            worker.landed.removeAll()
            if !worker.localPrompts.isEmpty {
                let r = worker.localPrompts.removeFirst()
                let tokens = requests[r].promptTokens
                start(worker, .localPrompt(r), seconds: prefillSeconds(chunks: [tokens], on: worker))
                return
            }
            if let pass = nextPrefillPass(worker) {
                start(worker, .prefillPass(pass), seconds: prefillSeconds(chunks: pass.map(\.tokens), on: worker))
                return
            }
            if !worker.active.isEmpty {
                let batch = nextBatch(worker)
                let context = batch.reduce(0) { $0 + requests[$1].contextTokens }
                start(worker, .step(batch),
                      seconds: costs.decodeStepSeconds(batch: batch.count, context: context, device: worker.spec.profile))
            }
        }

        mutating func start(_ worker: Worker, _ work: Work, seconds: Double) {
            worker.work = work
            worker.busySeconds += seconds
            queue.schedule(.laneDone(worker.index), at: now + seconds)
        }

        func prefillSeconds(chunks: [Int], on worker: Worker) -> Double {
            let squares = chunks.reduce(0.0) { $0 + Double($1) * Double($1) }
            return costs.prefillSeconds(tokens: chunks.reduce(0, +), squaredTokens: squares, device: worker.spec.profile)
        }

        /// Admits waiting requests in arrival order while prompt + max tokens fit in the decode cache.
        mutating func admitDecode(_ worker: Worker) {
            while worker.decodeWaitingHead < worker.decodeWaiting.count {
                let r = worker.decodeWaiting[worker.decodeWaitingHead]
                let request = requests[r]
                let blocks = costs.blocks(tokens: request.promptTokens + request.spec.maxTokens)
                if blocks > worker.kvTotal {
                    worker.decodeWaitingHead += 1
                    fail(r, "http 400")
                    continue
                }
                guard worker.kvUsed + blocks <= worker.kvTotal else { break }
                worker.decodeWaitingHead += 1
                worker.kvUsed += blocks
                request.blocksOnDecode = blocks
                request.reserved = true
                if request.prefillWorker == nil {
                    worker.localPrompts.append(r)
                } else if request.prefillDone {
                    startHandoff(r)
                }
            }
            compact(&worker.decodeWaiting, head: &worker.decodeWaitingHead)
        }

        /// Admits hand-off prompts in arrival order while their whole KV fits in the prefill cache (a worker that
        /// also decodes shares its one cache between both).
        mutating func admitPrefill(_ worker: Worker) {
            while worker.prefillWaitingHead < worker.prefillWaiting.count {
                let r = worker.prefillWaiting[worker.prefillWaitingHead]
                let blocks = costs.blocks(tokens: requests[r].promptTokens)
                if blocks > worker.kvTotal {
                    worker.prefillWaitingHead += 1
                    fail(r, "http 400")
                    continue
                }
                guard worker.kvUsed + blocks <= worker.kvTotal else { break }
                worker.prefillWaitingHead += 1
                worker.kvUsed += blocks
                requests[r].blocksOnPrefill = blocks
                worker.prefillAdmitted.append(r)
            }
            compact(&worker.prefillWaiting, head: &worker.prefillWaitingHead)
        }

        func compact(_ list: inout [Int], head: inout Int) {
            if head > 1024, head * 2 > list.count {
                list.removeFirst(head)
                head = 0
            }
        }

        /// Whole admitted prompts in order while they fit in one chunk; a longer first prompt gets a chunk alone.
        func nextPrefillPass(_ worker: Worker) -> [(request: Int, tokens: Int)]? {
            let chunk = costs.prefillChunkTokens
            var pass: [(request: Int, tokens: Int)] = []
            var rows = 0
            for r in worker.prefillAdmitted where requests[r].prefilled < requests[r].promptTokens {
                let remaining = requests[r].promptTokens - requests[r].prefilled
                if pass.isEmpty, remaining > chunk { return [(r, chunk)] }
                guard rows + remaining <= chunk else { break }
                pass.append((r, remaining))
                rows += remaining
            }
            return pass.isEmpty ? nil : pass
        }

        /// Up to `max_batch` active sequences, in turns when more are active.
        func nextBatch(_ worker: Worker) -> [Int] {
            let count = worker.active.count, size = min(worker.spec.maxBatch, count)
            guard size < count else { return worker.active }
            return (0..<size).map { worker.active[(worker.turn + $0) % count] }
        }

        mutating func laneDone(_ w: Int) {
            let worker = workers[w]
            guard let work = worker.work else { return }
            worker.work = nil
            switch work {
            case .prefillPass(let pass):
                for (r, tokens) in pass {
                    let request = requests[r]
                    request.prefilled += tokens
                    guard request.prefilled >= request.promptTokens else { continue }
                    request.prefillDone = true
                    worker.prefillAdmitted.removeAll { $0 == r }
                    worker.recentTTFT.add((now - request.sent) * 1000)
                    if request.reserved { startHandoff(r) }
                }
            case .localPrompt(let r):
                emitFirstToken(r, on: worker)
                if requests[r].finished == nil { worker.active.append(r) }
            case .step(let batch):
                if batch.count < worker.active.count { worker.turn = (worker.turn + batch.count) % worker.active.count }
                var done = false
                for r in batch {
                    let request = requests[r]
                    request.tokens += 1
                    request.itl.append((now - request.lastToken) * 1000)
                    request.lastToken = now
                    if request.tokens >= request.spec.maxTokens {
                        complete(r, on: worker)
                        done = true
                    }
                }
                if done {
                    worker.active.removeAll { requests[$0].finished != nil }
                    if !worker.active.isEmpty { worker.turn %= worker.active.count } else { worker.turn = 0 }
                }
            }
            kick(w)
        }

        mutating func startHandoff(_ r: Int) {
            let request = requests[r]
            guard !request.handoffStarted, let p = request.prefillWorker else { return }
            request.handoffStarted = true
            let from = workers[p], to = workers[request.decodeWorker]
            let link = LinkKind.between(from.spec.profile, to.spec.profile) == .sharedMemory
                ? simulator.options.sharedMemoryLink : LinkProfile.between(from.spec.link, to.spec.link)
            queue.schedule(.handoffDone(r), at: now + costs.handoffSeconds(tokens: request.promptTokens, link: link))
        }

        mutating func handoffDone(_ r: Int) {
            let request = requests[r]
            if let p = request.prefillWorker {
                workers[p].kvUsed -= request.blocksOnPrefill
                request.blocksOnPrefill = 0
                kick(p)
            }
            workers[request.decodeWorker].landed.append(r)
            kick(request.decodeWorker)
        }

        mutating func emitFirstToken(_ r: Int, on worker: Worker) {
            let request = requests[r]
            request.tokens = 1
            request.firstToken = now
            request.lastToken = now
            worker.recentTTFT.add((now - request.sent) * 1000)
            // The router stops counting it as queued on its workers once it has started.
            if let pair = request.pair { view.release(pair) }
            if request.spec.maxTokens <= 1 { complete(r, on: worker) }
            // Not at once: this runs inside a worker's kick, which a placement would re-enter.
            if !retryScheduled, routerQueueHead < routerQueue.count {
                retryScheduled = true
                queue.schedule(.routerRetry, at: now)
            }
        }

        mutating func complete(_ r: Int, on worker: Worker) {
            let request = requests[r]
            guard request.finished == nil else { return }
            request.finished = now
            worker.kvUsed -= request.blocksOnDecode
            request.blocksOnDecode = 0
            if let first = request.firstToken, request.tokens > 1 {
                worker.recentTPOT.add((now - first) * 1000 / Double(request.tokens - 1))
            }
            finish(r)
        }

        // MARK: Result

        func result(wallSeconds: Double) -> Result {
            let records = requests.map { request -> RequestRecord in
                let ok = request.error == nil && request.finished != nil
                return RequestRecord(
                    index: request.spec.index, conversation: request.spec.conversation, turn: request.spec.turn,
                    scheduledMs: request.scheduled * 1000, sentMs: request.sent * 1000,
                    ttftMs: ok ? request.firstToken.map { ($0 - request.sent) * 1000 } : nil,
                    e2eMs: ok ? request.finished.map { ($0 - request.sent) * 1000 } : nil,
                    itlMs: ok ? request.itl : [], promptTokens: request.promptTokens,
                    completionTokens: ok ? request.tokens : 0, error: request.finished == nil ? "unfinished" : request.error)
            }
            let firstSent = requests.map(\.sent).min() ?? 0
            let lastEnd = requests.compactMap(\.finished).max() ?? firstSent
            let duration = max(lastEnd - firstSent, 1e-9)
            var busy: [String: Double] = [:]
            for worker in workers { busy[worker.name] = min(1, worker.busySeconds / max(lastEnd, 1e-9)) }
            return Result(
                records: records, summary: LevelSummary(records: records, durationSeconds: duration, slo: simulator.options.slo),
                decodeOnly: decodeOnly, queuedAtRouter: requests.filter(\.everQueued).count, events: events,
                wallSeconds: wallSeconds, busyShare: busy)
        }
    }
}
