import Synchronization

/// The block hashes (`PrefixHash`) a cache's prefix index holds right now, readable from any thread: what a worker
/// publishes to placement as KV events. The cache's owner updates it as blocks enter and leave the index; the
/// worker's heartbeat reads it. Bounded by the cache's block count.
public final class HeldBlockHashes: Sendable {
    private let hashes = Mutex(Set<UInt64>())
    /// Tokens per block of the cache it mirrors (what a router needs to hash a prompt the same way).
    public let blockSize: Int

    public init(blockSize: Int) {
        self.blockSize = blockSize
    }

    /// A copy of the held hashes.
    public var current: Set<UInt64> { hashes.withLock { $0 } }

    func insert(_ hash: UInt64) {
        _ = hashes.withLock { $0.insert(hash) }
    }

    func remove(_ hash: UInt64) {
        _ = hashes.withLock { $0.remove(hash) }
    }
}
