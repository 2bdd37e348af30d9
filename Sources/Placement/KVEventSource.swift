/// A worker's side of its KV events: turns what its caches hold now into the next numbered batch for a heartbeat
/// (a change against what placement last acknowledged, or a reset), and learns from each heartbeat's outcome.
///
/// A value type with no I/O (the worker's agent sends the batches). After a heartbeat that failed, placement may or
/// may not have applied the batch, so the next one is a reset: a change is only ever sent against contents
/// placement is known to hold.
public struct KVEventSource: Sendable {
    /// What one cache holds (nil: the worker has no such cache).
    public struct Contents: Sendable, Equatable {
        public var decode: Set<UInt64>?
        public var prefill: Set<UInt64>?

        public init(decode: Set<UInt64>?, prefill: Set<UInt64>?) {
            self.decode = decode
            self.prefill = prefill
        }
    }

    public let incarnation: String
    public let blockSize: Int
    /// The number of the last batch handed out.
    public private(set) var sequence: UInt64 = 0
    /// What placement holds for this process as of the last delivered batch; nil: send a reset next.
    private var acknowledged: Contents?
    /// The contents the batch in flight leaves placement holding once delivered.
    private var sending: Contents?

    public init(incarnation: String, blockSize: Int) {
        self.incarnation = incarnation
        self.blockSize = blockSize
    }

    /// The batch to send with the next heartbeat, given what the caches hold now; nil when nothing changed since
    /// the last delivered batch. Call `delivered` or `failed` once the heartbeat's outcome is known.
    public mutating func next(_ current: Contents) -> KVEventBatch? {
        let batch: KVEventBatch
        if let acknowledged {
            guard acknowledged != current else { return nil }
            batch = KVEventBatch(incarnation: incarnation, sequence: sequence + 1, reset: false, blockSize: blockSize,
                                 decode: Self.delta(from: acknowledged.decode, to: current.decode),
                                 prefill: Self.delta(from: acknowledged.prefill, to: current.prefill))
        } else {
            batch = KVEventBatch(incarnation: incarnation, sequence: sequence + 1, reset: true, blockSize: blockSize,
                                 decode: current.decode.map { .init(stored: $0.sorted()) },
                                 prefill: current.prefill.map { .init(stored: $0.sorted()) })
        }
        sequence += 1
        sending = current
        return batch
    }

    /// The heartbeat carrying the last batch arrived; `resetRequested`: placement has dropped this worker's entries
    /// (it missed batches, or restarted) and wants a reset next.
    public mutating func delivered(resetRequested: Bool) {
        if let sending { acknowledged = sending }
        sending = nil
        if resetRequested { acknowledged = nil }
    }

    /// The heartbeat failed: the next batch is a reset.
    public mutating func failed() {
        acknowledged = nil
        sending = nil
    }

    private static func delta(from old: Set<UInt64>?, to new: Set<UInt64>?) -> KVEventBatch.CacheDelta? {
        guard let new else { return old.map { .init(removed: $0.sorted()) } }
        let before = old ?? []
        return .init(stored: new.subtracting(before).sorted(), removed: before.subtracting(new).sorted())
    }
}
