import Synchronization

/// A decode worker's open `OpenDecode` reservations that wait for KV: who opened each, which node may send it (the
/// prefill worker, or the decode worker a generation moves from), how many KV blocks it holds, and whether its KV started arriving. `OpenDecode` adds and removes
/// entries, the KV receiver checks a sender against them, and they bound what one peer may hold. Thread-safe.
public final class KVReservations: Sendable {
    struct Entry {
        /// The node that opened it (nil in insecure mode).
        var opener: String?
        /// The only node that may send its KV (nil in insecure mode: any).
        var sender: String?
        var blocks: Int
        var started = false
    }

    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    /// Records `requestID`, opened by `opener` for KV from `sender`, holding `blocks`. Refuses (returning why) a
    /// request id already open here, or one that would take `opener`'s blocks waiting for KV past `peerLimit`.
    func open(_ requestID: String, opener: String?, sender: String?, blocks: Int, peerLimit: Int) -> String? {
        entries.withLock { entries in
            guard entries[requestID] == nil else { return "request \(requestID) is already open here" }
            if let opener {
                let held = entries.values.filter { $0.opener == opener && !$0.started }.reduce(0) { $0 + $1.blocks }
                guard held + blocks <= peerLimit else {
                    return "\(opener) already holds \(held) KV blocks waiting for KV here; \(blocks) more would pass its share of \(peerLimit)"
                }
            }
            entries[requestID] = Entry(opener: opener, sender: sender, blocks: blocks)
            return nil
        }
    }

    func close(_ requestID: String) {
        _ = entries.withLock { $0.removeValue(forKey: requestID) }
    }

    /// Marks `requestID`'s KV as arriving from `sender` (nil: unauthenticated), or says why `sender` may not send it.
    func begin(_ requestID: String, from sender: String?) -> String? {
        entries.withLock { entries in
            guard var entry = entries[requestID] else {
                return "request \(requestID) was not opened here for KV"
            }
            if let expected = entry.sender, let sender, expected != sender {
                return "request \(requestID) was opened for KV from \(expected), not \(sender)"
            }
            entry.started = true
            entries[requestID] = entry
            return nil
        }
    }
}
