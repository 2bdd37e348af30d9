import Generation

/// What one worker's prefix caches stored and evicted since its previous batch (a KV event batch), as it sends it
/// with a heartbeat. Hashes are `PrefixHash` block hashes, so a router can hash a prompt the same way.
///
/// Batches of one worker process are numbered 1, 2, 3, …; a `reset` batch lists everything the caches hold and
/// replaces what an index knew of the worker. A worker sends a reset first, after any heartbeat that failed (the
/// batch it carried may or may not have arrived), and when placement asks for one.
public struct KVEventBatch: Codable, Sendable, Equatable {
    /// One cache's changes: hashes that entered its prefix index, and hashes that left it (evicted, dropped).
    public struct CacheDelta: Codable, Sendable, Equatable {
        public var stored: [UInt64]
        public var removed: [UInt64]

        public init(stored: [UInt64] = [], removed: [UInt64] = []) {
            self.stored = stored
            self.removed = removed
        }
    }

    /// The worker process (`WorkerIncarnation`) whose caches these are.
    public var incarnation: String
    /// 1 for the process's first batch, then one more for each next batch.
    public var sequence: UInt64
    /// The batch lists every hash held (`stored`), not a change.
    public var reset: Bool
    /// Tokens per KV block in the worker's caches.
    public var blockSize: Int
    /// The decode scheduler's cache (prompts run and KV received on a decode worker); nil: the worker has none.
    public var decode: CacheDelta?
    /// The prefill queue's cache (prompts prefilled for another worker); nil: the worker has none.
    public var prefill: CacheDelta?

    public init(incarnation: String, sequence: UInt64, reset: Bool, blockSize: Int, decode: CacheDelta?, prefill: CacheDelta?) {
        self.incarnation = incarnation
        self.sequence = sequence
        self.reset = reset
        self.blockSize = blockSize
        self.decode = decode
        self.prefill = prefill
    }

    enum CodingKeys: String, CodingKey {
        case incarnation, sequence, reset, blockSize = "block_size", decode, prefill
    }

    /// Most hashes one batch may name (both caches, stored and removed).
    public static let maximumHashes = 4 * PrefixIndex.maximumHashesPerCache

    /// Hashes the batch names, all caches together (for bounds).
    public var hashCount: Int {
        [decode, prefill].compactMap { $0 }.reduce(0) { $0 + $1.stored.count + $1.removed.count }
    }
}

/// Which block hashes each worker's prefix caches hold, as their KV event batches told: placement keeps one from
/// heartbeats, and every router a replica from the same batches forwarded on the membership watch.
///
/// Never trusts what it cannot vouch for: a batch out of sequence (a lost or reordered batch), a batch of another
/// worker process, a batch over the bounds, a lost or departed worker all make it drop that worker's entries, and
/// it takes no changes for the worker until a reset batch says again what the worker holds. A value type with no
/// I/O; not thread-safe.
public struct PrefixIndex: Sendable, Equatable {
    /// What one worker process holds, as of its batch `sequence`.
    public struct Holdings: Sendable, Equatable {
        public var incarnation: String
        public var sequence: UInt64
        public var blockSize: Int
        public var decode: Set<UInt64>
        public var prefill: Set<UInt64>

        /// The hashes of one cache (`.decode`: the decode scheduler's, `.prefill`: the prefill queue's).
        public func hashes(_ cache: WorkerRole) -> Set<UInt64> { cache == .decode ? decode : prefill }
    }

    /// What applying a batch did.
    public enum Outcome: Sendable, Equatable {
        /// A change, in sequence, applied.
        case applied
        /// A reset batch replaced what was known.
        case reset
        /// The worker's entries were dropped (why); changes are refused until a reset batch arrives.
        case dropped(String)
    }

    /// Most hashes one cache of one worker may hold in the index: a batch that would go past it drops the worker
    /// (a cache of 128 Ki blocks is 2 Mi tokens at 16 tokens a block, beyond any worker's KV pool here).
    public static let maximumHashesPerCache = 1 << 17
    /// Most tokens per block a batch may name.
    public static let maximumBlockSize = 1 << 16

    public private(set) var workers: [String: Holdings] = [:]
    /// Workers whose entries were dropped (by a batch or `forget`): they need a reset batch before anything counts.
    public private(set) var awaitingReset: Set<String> = []

    public init() {}

    /// Applies one batch from `worker`.
    @discardableResult
    public mutating func apply(_ batch: KVEventBatch, from worker: String) -> Outcome {
        guard (1...Self.maximumBlockSize).contains(batch.blockSize) else {
            return drop(worker, "block size \(batch.blockSize) outside 1...\(Self.maximumBlockSize)")
        }
        guard WorkerIncarnation(batch.incarnation) != nil else {
            return drop(worker, "invalid incarnation '\(batch.incarnation)'")
        }
        if batch.reset {
            let decode = Set(batch.decode?.stored ?? []), prefill = Set(batch.prefill?.stored ?? [])
            guard decode.count <= Self.maximumHashesPerCache, prefill.count <= Self.maximumHashesPerCache else {
                return drop(worker, "reset batch \(batch.sequence) lists more than \(Self.maximumHashesPerCache) hashes for one cache")
            }
            workers[worker] = Holdings(incarnation: batch.incarnation, sequence: batch.sequence, blockSize: batch.blockSize,
                                       decode: decode, prefill: prefill)
            awaitingReset.remove(worker)
            return .reset
        }
        guard var holdings = workers[worker] else {
            return drop(worker, "batch \(batch.sequence) changes holdings never listed (waiting for a reset batch)")
        }
        guard holdings.incarnation == batch.incarnation else {
            return drop(worker, "batch \(batch.sequence) comes from process \(batch.incarnation), not \(holdings.incarnation)")
        }
        guard batch.sequence == holdings.sequence &+ 1 else {
            return drop(worker, "batch \(batch.sequence) follows batch \(holdings.sequence): \(batch.sequence > holdings.sequence ? "batches were lost" : "out of order")")
        }
        guard batch.blockSize == holdings.blockSize else {
            return drop(worker, "batch \(batch.sequence) has \(batch.blockSize)-token blocks, not \(holdings.blockSize)")
        }
        if let delta = batch.decode { Self.apply(delta, to: &holdings.decode) }
        if let delta = batch.prefill { Self.apply(delta, to: &holdings.prefill) }
        guard holdings.decode.count <= Self.maximumHashesPerCache, holdings.prefill.count <= Self.maximumHashesPerCache else {
            return drop(worker, "batch \(batch.sequence) takes a cache past \(Self.maximumHashesPerCache) hashes")
        }
        holdings.sequence = batch.sequence
        workers[worker] = holdings
        return .applied
    }

    /// Drops `worker`'s entries (it was lost, left, or restarted); it needs a reset batch before anything counts.
    public mutating func forget(_ worker: String) {
        workers[worker] = nil
        awaitingReset.insert(worker)
    }

    /// Drops the entries of every worker `state` no longer vouches for: departed, lost, or registered as another
    /// process than the one whose batches built them. Returns the workers dropped.
    @discardableResult
    public mutating func reconcile(with state: ClusterState) -> [String] {
        var dropped: [String] = []
        for (name, holdings) in workers {
            guard let worker = state.workers[name], worker.status != .lost,
                  worker.incarnation.map({ $0 == holdings.incarnation }) ?? true else {
                dropped.append(name)
                continue
            }
        }
        for name in dropped { forget(name) }
        // Departed workers need nothing more: a new process registers and sends a reset first.
        awaitingReset = awaitingReset.filter { state.workers[$0] != nil }
        return dropped.sorted()
    }

    /// Everything the index holds as one reset batch per worker (what a new watch stream starts from).
    public var resetBatches: [WorkerKVEvents] {
        workers.keys.sorted().compactMap { name in
            guard let holdings = workers[name] else { return nil }
            return WorkerKVEvents(worker: name, batch: KVEventBatch(
                incarnation: holdings.incarnation, sequence: holdings.sequence, reset: true, blockSize: holdings.blockSize,
                decode: .init(stored: holdings.decode.sorted()), prefill: .init(stored: holdings.prefill.sorted())))
        }
    }

    private mutating func drop(_ worker: String, _ reason: String) -> Outcome {
        forget(worker)
        return .dropped(reason)
    }

    private static func apply(_ delta: KVEventBatch.CacheDelta, to hashes: inout Set<UInt64>) {
        for hash in delta.removed { hashes.remove(hash) }
        for hash in delta.stored { hashes.insert(hash) }
    }
}

/// A KV event batch and the worker it came from, as the membership watch forwards it.
public struct WorkerKVEvents: Codable, Sendable, Equatable {
    public var worker: String
    public var batch: KVEventBatch

    public init(worker: String, batch: KVEventBatch) {
        self.worker = worker
        self.batch = batch
    }
}

/// The KV event batches a membership snapshot carries to a router: either everything placement's index holds
/// (`full`: the router starts its replica from these reset batches) or the batches placement received since the
/// previous snapshot on this stream, in the order received.
public struct PrefixIndexUpdate: Codable, Sendable, Equatable {
    /// Replace the replica rather than apply changes.
    public var full: Bool
    public var batches: [WorkerKVEvents]
    /// Placement's position in its stream of received batches after these (the stream's cursor).
    public var position: UInt64

    public init(full: Bool, batches: [WorkerKVEvents], position: UInt64) {
        self.full = full
        self.batches = batches
        self.position = position
    }

    /// Applies the update to a replica.
    public func apply(to index: inout PrefixIndex) {
        if full { index = PrefixIndex() }
        for entry in batches { index.apply(entry.batch, from: entry.worker) }
    }
}
