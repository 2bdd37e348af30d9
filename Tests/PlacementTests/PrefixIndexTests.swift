import Foundation
import Generation
import Testing

@testable import Placement

/// The prefix index built from workers' KV event batches, and the worker side that numbers them.
@Suite("Prefix index")
struct PrefixIndexTests {
    static let first = "1000-0000000000000001"
    static let second = "2000-0000000000000002"
    /// A 64-token prompt: four blocks of 16.
    static let prompt: [Int32] = (0..<64).map { Int32($0 * 7 + 3) }

    /// The first `blocks` block hashes of `prompt` on the prefill path.
    static func hashes(_ blocks: Int, of prompt: [Int32] = prompt, path: PromptPath = .prefill) -> [UInt64] {
        Array(PrefixHash.chain(prompt, blockSize: 16, namespace: path.prefixNamespace).prefix(blocks))
    }

    static func batch(_ sequence: UInt64, reset: Bool = false, incarnation: String = first, stored: [UInt64] = [],
                      removed: [UInt64] = []) -> KVEventBatch {
        KVEventBatch(incarnation: incarnation, sequence: sequence, reset: reset, blockSize: 16,
                     decode: .init(stored: stored, removed: removed), prefill: nil)
    }

    static func cached(_ index: PrefixIndex, _ worker: String = "d", prompt: [Int32] = prompt) -> Int {
        PrefixMatch(prompt: prompt, index: index).cachedTokens(worker: worker, cache: .decode, path: .prefill)
    }

    static func state(_ workers: [(String, String)], lost: Set<String> = []) -> ClusterState {
        var state = ClusterState()
        for (name, incarnation) in workers {
            state.apply(.joined(profile: profile(name), roles: [.decode], incarnation: incarnation, at: epoch))
            if lost.contains(name) { state.apply(.heartbeatLost(worker: name, at: epoch)) }
        }
        return state
    }

    @Test("batches applied in order say which leading blocks a worker holds, and evictions take them away")
    func eventsInOrder() {
        var index = PrefixIndex()
        #expect(index.apply(Self.batch(1, reset: true, stored: Self.hashes(2)), from: "d") == .reset)
        #expect(Self.cached(index) == 32)
        #expect(index.apply(Self.batch(2, stored: Array(Self.hashes(4).suffix(2))), from: "d") == .applied)
        #expect(Self.cached(index) == 63, "at least one prompt token is always computed")
        // The second block evicted: only the first still leads the prompt.
        #expect(index.apply(Self.batch(3, removed: [Self.hashes(2)[1]]), from: "d") == .applied)
        #expect(Self.cached(index) == 16)
        // Another cache, another path, another worker: none of them holds this.
        let match = PrefixMatch(prompt: Self.prompt, index: index)
        #expect(match.cachedTokens(worker: "d", cache: .prefill, path: .prefill) == 0)
        #expect(match.cachedTokens(worker: "d", cache: .decode, path: .decode) == 0)
        #expect(match.cachedTokens(worker: "e", cache: .decode, path: .prefill) == 0)
        // A prompt that parts after the first block matches only that block.
        var other = Self.prompt
        other[20] = 9999
        index.apply(Self.batch(4, stored: Self.hashes(4)), from: "d")
        #expect(Self.cached(index, prompt: other) == 16)
    }

    @Test("a gap in the sequence drops the worker's entries until a reset batch")
    func gapDrops() {
        var index = PrefixIndex()
        index.apply(Self.batch(1, reset: true, stored: Self.hashes(4)), from: "d")
        guard case .dropped(let reason) = index.apply(Self.batch(3, stored: []), from: "d") else {
            Issue.record("a gap was applied")
            return
        }
        #expect(reason.contains("batches were lost"))
        #expect(Self.cached(index) == 0)
        #expect(index.awaitingReset == ["d"])
        // Changes after the gap are refused too: their base is unknown.
        #expect(index.apply(Self.batch(4, stored: Self.hashes(4)), from: "d") != .applied)
        #expect(Self.cached(index) == 0)
        #expect(index.apply(Self.batch(5, reset: true, stored: Self.hashes(3)), from: "d") == .reset)
        #expect(Self.cached(index) == 48)
        #expect(index.awaitingReset.isEmpty)
        // A batch repeated (or reordered) is no better than a lost one.
        #expect(index.apply(Self.batch(5, stored: []), from: "d") != .applied)
        #expect(Self.cached(index) == 0)
    }

    @Test("a batch from another process of the worker drops its entries, and so does the membership's new incarnation")
    func incarnationChangeDrops() {
        var index = PrefixIndex()
        index.apply(Self.batch(1, reset: true, stored: Self.hashes(4)), from: "d")
        #expect(index.apply(Self.batch(2, incarnation: Self.second, stored: []), from: "d") != .applied)
        #expect(Self.cached(index) == 0)
        // The restarted process starts with a reset, its cache cold.
        #expect(index.apply(Self.batch(1, reset: true, incarnation: Self.second, stored: []), from: "d") == .reset)
        #expect(Self.cached(index) == 0)

        index.apply(Self.batch(1, reset: true, stored: Self.hashes(4)), from: "d")
        #expect(index.reconcile(with: Self.state([("d", Self.first)])).isEmpty)
        #expect(Self.cached(index) == 63)
        #expect(index.reconcile(with: Self.state([("d", Self.second)])) == ["d"])
        #expect(Self.cached(index) == 0)
    }

    @Test("a lost or departed worker's entries are dropped")
    func lostWorkerDrops() {
        var index = PrefixIndex()
        index.apply(Self.batch(1, reset: true, stored: Self.hashes(4)), from: "d")
        index.apply(Self.batch(1, reset: true, stored: Self.hashes(4)), from: "e")
        #expect(index.reconcile(with: Self.state([("d", Self.first), ("e", Self.first)], lost: ["e"])) == ["e"])
        #expect(Self.cached(index, "d") == 63 && Self.cached(index, "e") == 0)
        #expect(index.reconcile(with: Self.state([("e", Self.first)])) == ["d"])
        #expect(index.workers.isEmpty)
        #expect(index.awaitingReset == ["e"], "a departed worker needs nothing more")
    }

    @Test("batches past the bounds, with a bad block size or incarnation drop the worker instead of growing the index")
    func boundsDrop() {
        var index = PrefixIndex()
        let tooMany = (0..<UInt64(PrefixIndex.maximumHashesPerCache + 1)).map { $0 }
        #expect(index.apply(Self.batch(1, reset: true, stored: tooMany), from: "d") != .reset)
        #expect(index.workers.isEmpty)
        var sizeless = Self.batch(1, reset: true)
        sizeless.blockSize = 0
        #expect(index.apply(sizeless, from: "d") != .reset)
        #expect(index.apply(Self.batch(1, reset: true, incarnation: "yesterday"), from: "d") != .reset)
        index.apply(Self.batch(1, reset: true, stored: Array(tooMany.prefix(PrefixIndex.maximumHashesPerCache))), from: "d")
        #expect(index.workers["d"]?.decode.count == PrefixIndex.maximumHashesPerCache)
        #expect(index.apply(Self.batch(2, stored: [UInt64.max]), from: "d") != .applied)
        #expect(index.workers.isEmpty)
    }

    @Test("a replica fed the forwarded batches, or a full update, holds what the index holds")
    func replicasAgree() {
        var index = PrefixIndex()
        var forwarded: [WorkerKVEvents] = []
        for (worker, batch) in [("d", Self.batch(1, reset: true, stored: Self.hashes(2))), ("e", Self.batch(2, stored: [])),
                                ("d", Self.batch(2, stored: Self.hashes(4))), ("d", Self.batch(3, removed: Self.hashes(1)))] {
            index.apply(batch, from: worker)
            forwarded.append(WorkerKVEvents(worker: worker, batch: batch))
        }
        var replica = PrefixIndex()
        PrefixIndexUpdate(full: false, batches: forwarded, position: 4).apply(to: &replica)
        #expect(replica.workers == index.workers)
        var fresh = PrefixIndex()
        fresh.apply(Self.batch(9, reset: true, stored: [1, 2, 3]), from: "stale")
        PrefixIndexUpdate(full: true, batches: index.resetBatches, position: 4).apply(to: &fresh)
        #expect(fresh.workers == index.workers)
    }

    @Test("a worker sends a reset first, then changes, and a reset again after a failed heartbeat or when asked")
    func eventSource() {
        var source = KVEventSource(incarnation: Self.first, blockSize: 16)
        let one = KVEventSource.Contents(decode: [1, 2], prefill: nil)
        let first = source.next(one)
        #expect(first?.reset == true && first?.sequence == 1 && first?.decode?.stored == [1, 2] && first?.prefill == nil)
        source.delivered(resetRequested: false)
        #expect(source.next(one) == nil, "nothing changed: no batch")
        let two = KVEventSource.Contents(decode: [2, 3], prefill: [7])
        let change = source.next(two)
        #expect(change?.reset == false && change?.sequence == 2)
        #expect(change?.decode == .init(stored: [3], removed: [1]) && change?.prefill == .init(stored: [7], removed: []))
        source.failed()
        let again = source.next(two)
        #expect(again?.reset == true && again?.sequence == 3, "the failed batch's number is never reused")
        source.delivered(resetRequested: true)
        #expect(source.next(two)?.reset == true)
        source.delivered(resetRequested: false)

        // Placement's index, fed the batches that arrived, holds what the worker holds.
        var index = PrefixIndex()
        var worker = KVEventSource(incarnation: Self.first, blockSize: 16)
        for (contents, arrives) in [(one, true), (two, false), (one, true), (two, true)] {
            guard let batch = worker.next(contents) else { continue }
            if arrives {
                index.apply(batch, from: "d")
                worker.delivered(resetRequested: index.workers["d"] == nil)
            } else {
                worker.failed()
            }
        }
        #expect(index.workers["d"]?.decode == [2, 3] && index.workers["d"]?.prefill == [7])
    }
}
