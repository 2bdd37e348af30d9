import Foundation
import Generation

/// A paged KV cache: a fixed pool of token blocks shared by many sequences through per-sequence block tables.
///
/// Storage is one zero-initialised, page-aligned (so 64-byte-aligned) anonymous memory mapping per layer holding
/// `blockCount` layer-block slices. Pages are committed by the OS when first written, so a large pool costs
/// resident memory only for the blocks in use. It is never reallocated, so pointers from `layerBlock(layer:block:)` stay valid for the cache's
/// lifetime. Slice (layer L, physical block b) = `K[kvHead][slot][headDim]` followed by
/// `V[kvHead][slot][headDim]` (`layout.dataType` elements). Token position t of a sequence lives in physical
/// block `blockTable[t / blockSize]`, slot `t % blockSize`.
///
/// Blocks are reference-counted: `fork` shares every block of a sequence; `append` copies a shared,
/// partially-filled last block (all layers) before the sequence may write into it (copy on write). Full
/// shared blocks are never written again, so they are never copied.
///
/// **Prefix cache.** `registerPrefix` enters a sequence's full blocks in an index keyed by a chained hash of their
/// token ids (and a caller's namespace: how the KV was computed); `adoptPrefix` gives a new sequence the longest
/// indexed prefix of its tokens, sharing the blocks. A match is confirmed against the block's token ids and its
/// parent block (by identity and epoch, so a hash never stands for content on its own). A released block that is
/// indexed stays cached, counted as free: it is evicted, least recently used first, when a block is needed.
///
/// Not thread-safe: owned by the engine's one serial owner.
public final class PagedKVCache: @unchecked Sendable {
    public let layout: KVCacheLayout
    public let blockCount: Int

    /// Per-layer storage, `layerByteCount` (= `blockCount * layout.layerBlockBytes`) bytes each.
    private let storage: [UnsafeMutableRawPointer]
    private let layerByteCount: Int
    /// References to each physical block (0 = free).
    private var referenceCounts: [Int32]
    /// Free physical blocks; the next allocation takes the last one.
    private var freeList: [Int32]
    private var sequences: [SequenceID: SequenceState] = [:]
    private var nextSequenceID: UInt64 = 1
    /// Indexed blocks by chained hash, and what each holds.
    private var prefixIndex: [UInt64: Int32] = [:]
    private var indexed: [Int32: IndexedBlock] = [:]
    /// Bumped whenever a block leaves the index: a child's parent reference then no longer matches.
    private var epochs: [UInt32]
    /// Unreferenced indexed blocks in release order (stale entries skipped on eviction), and how many there are.
    private var evictionQueue: [(block: Int32, tick: UInt64)] = []
    private var evictionHead = 0
    private var evictableCount = 0
    private var clock: UInt64 = 0
    /// Mirrors the hashes the prefix index holds, for the worker's KV events; nil: nobody listens. Set it before
    /// the first `registerPrefix` (it is not back-filled), with the cache's block size.
    public var heldHashes: HeldBlockHashes? {
        didSet { precondition(heldHashes.map { $0.blockSize == layout.blockSize } ?? true, "held hashes of another block size") }
    }

    struct IndexedBlock {
        var hash: UInt64
        var namespace: UInt64
        var tokens: [Int32]
        var parent: BlockReference?
        /// When it was last released or adopted (its eviction-queue entry is current only if the ticks match).
        var tick: UInt64
    }

    struct BlockReference: Equatable {
        var block: Int32
        var epoch: UInt32
    }

    struct SequenceState {
        var blocks: [Int32]
        var tokenCount: Int
    }

    /// Maps `layout.layers` zeroed regions of `blockCount * layout.layerBlockBytes` bytes.
    /// Throws `.invalidArgument` for an invalid layout, a non-positive block count, more than `Int32.max`
    /// blocks, a size that overflows, or memory the system refuses to map.
    public init(layout: KVCacheLayout, blockCount: Int) throws(InferenceError) {
        try layout.validate()
        guard blockCount >= 1, blockCount <= Int(Int32.max) else {
            throw InferenceError(.invalidArgument, "KV cache blockCount must be in 1...\(Int32.max), got \(blockCount)")
        }
        let (layerBytes, overflow) = blockCount.multipliedReportingOverflow(by: layout.layerBlockBytes)
        guard !overflow, !layerBytes.multipliedReportingOverflow(by: layout.layers).overflow else {
            throw InferenceError(
                .invalidArgument,
                "KV cache of \(blockCount) blocks × \(layout.layerBlockBytes) bytes × \(layout.layers) layers overflows")
        }
        self.layout = layout
        self.blockCount = blockCount
        var regions: [UnsafeMutableRawPointer] = []
        for layer in 0..<layout.layers {
            // Zero-filled and committed lazily, page by page; huge pages where Linux allows them, as a decode
            // step reads scattered few-KiB blocks of every sequence in every layer.
            guard let address = PageMemory.mapAnonymous(bytes: layerBytes) else {
                let code = errno
                for region in regions { munmap(region, layerBytes) }
                throw InferenceError(
                    .invalidArgument,
                    "cannot map \(layerBytes) bytes for KV layer \(layer) of \(layout.layers) (\(String(cString: strerror(code)))); use fewer blocks")
            }
            regions.append(address)
        }
        self.storage = regions
        self.layerByteCount = layerBytes
        self.referenceCounts = Array(repeating: 0, count: blockCount)
        self.epochs = Array(repeating: 0, count: blockCount)
        // Reversed so that allocation hands out blocks 0, 1, 2, ... on a fresh cache.
        self.freeList = (0..<Int32(blockCount)).reversed()
    }

    deinit {
        for region in storage { munmap(region, layerByteCount) }
    }

    /// Blocks not referenced by any sequence (free, or cached prefix blocks that would be evicted for room).
    public var freeBlockCount: Int { freeList.count + evictableCount }

    /// Blocks in the prefix index (referenced or not).
    public var cachedBlockCount: Int { indexed.count }

    /// Live sequences.
    public var sequenceCount: Int { sequences.count }

    /// Total bytes of KV storage (all layers).
    public var storageByteCount: Int { blockCount * layout.layerBlockBytes * layout.layers }

    /// How many sequences reference physical block `block` (0 = free). Out-of-range blocks report 0.
    public func referenceCount(ofBlock block: Int32) -> Int {
        guard block >= 0, Int(block) < blockCount else { return 0 }
        return Int(referenceCounts[Int(block)])
    }

    /// Creates an empty sequence (no blocks, no tokens).
    public func createSequence() -> SequenceID {
        let id = SequenceID(rawValue: nextSequenceID)
        nextSequenceID += 1
        sequences[id] = SequenceState(blocks: [], tokenCount: 0)
        return id
    }

    /// Whether `seq` is a live sequence of this cache.
    public func contains(_ seq: SequenceID) -> Bool { sequences[seq] != nil }

    /// Tokens the sequence holds (positions `0..<tokenCount`).
    public func tokenCount(_ seq: SequenceID) throws(InferenceError) -> Int {
        try state(seq).tokenCount
    }

    /// Physical blocks of the sequence in position order; `blockTable[t / blockSize]` holds position t.
    public func blockTable(_ seq: SequenceID) throws(InferenceError) -> [Int32] {
        try state(seq).blocks
    }

    /// Makes room for `count` more tokens and returns the first new position (the old token count).
    ///
    /// Allocates blocks as needed and, if the last block is partially filled and shared with a fork, first
    /// replaces it with a private copy (all layers). Throws `.kvCacheFull` leaving the sequence and the pool
    /// unchanged if there are not enough free blocks; `.invalidArgument` for a negative count;
    /// `.unknownSequence` for an unknown sequence. The caller then writes K/V for the new positions.
    @discardableResult
    public func append(_ seq: SequenceID, count: Int) throws(InferenceError) -> Int {
        var sequence = try state(seq)
        guard count >= 0 else {
            throw InferenceError(.invalidArgument, "cannot append \(count) tokens to \(seq): count must be >= 0")
        }
        let start = sequence.tokenCount
        guard count > 0 else { return start }
        let (newCount, overflow) = start.addingReportingOverflow(count)
        guard !overflow, newCount <= KVSequenceDescriptor.maximumTokenCount else {
            throw InferenceError(
                .invalidArgument,
                "cannot append \(count) tokens to \(seq) holding \(start): at most \(KVSequenceDescriptor.maximumTokenCount) tokens per sequence")
        }
        let newBlocks = layout.blocks(forTokens: newCount) - sequence.blocks.count
        let last = sequence.blocks.last
        let copyLast = start % layout.blockSize != 0 && last.map { referenceCounts[Int($0)] > 1 || indexed[$0] != nil } == true
        let needed = newBlocks + (copyLast ? 1 : 0)
        guard needed <= freeBlockCount else {
            throw InferenceError(
                .kvCacheFull,
                "appending \(count) tokens to \(seq) (\(start) tokens) needs \(needed) free blocks, \(freeBlockCount) of \(blockCount) free")
        }
        if copyLast {
            let shared = sequence.blocks[sequence.blocks.count - 1]
            let copy = takeFreeBlock()
            copyBlock(from: shared, to: copy)
            referenceCounts[Int(shared)] -= 1
            sequence.blocks[sequence.blocks.count - 1] = copy
        }
        for _ in 0..<newBlocks {
            sequence.blocks.append(takeFreeBlock())
        }
        sequence.tokenCount = newCount
        sequences[seq] = sequence
        return start
    }

    /// Creates a new sequence sharing every block of `seq` (reference-counted, no copying, never fails for lack
    /// of space). Either sequence may then append; a shared partially-filled last block is copied on write.
    public func fork(_ seq: SequenceID) throws(InferenceError) -> SequenceID {
        let sequence = try state(seq)
        for block in sequence.blocks { referenceCounts[Int(block)] += 1 }
        let id = SequenceID(rawValue: nextSequenceID)
        nextSequenceID += 1
        sequences[id] = sequence
        return id
    }

    /// Shortens the sequence to its first `count` tokens, releasing blocks no longer needed (a block shared
    /// with a fork stays allocated for the fork). Throws `.invalidArgument` unless `0 <= count <= tokenCount`.
    public func truncate(_ seq: SequenceID, to count: Int) throws(InferenceError) {
        var sequence = try state(seq)
        guard count >= 0, count <= sequence.tokenCount else {
            throw InferenceError(
                .invalidArgument, "cannot truncate \(seq) to \(count) tokens: it holds \(sequence.tokenCount)")
        }
        let keep = layout.blocks(forTokens: count)
        for block in sequence.blocks[keep...] { release(block) }
        // A kept partial block will be written again: it can no longer stand for its old full content.
        if count % layout.blockSize != 0, let last = sequence.blocks[..<keep].last, referenceCounts[Int(last)] == 1 {
            unindex(last)
        }
        sequence.blocks.removeSubrange(keep...)
        sequence.tokenCount = count
        sequences[seq] = sequence
    }

    /// Ends the sequence and releases its blocks. Freeing an unknown (or already freed) sequence does nothing.
    public func free(_ seq: SequenceID) {
        guard let sequence = sequences.removeValue(forKey: seq) else { return }
        for block in sequence.blocks { release(block) }
    }

    /// Start of the (layer, physical block) slice, for the attention kernels to read and write.
    /// `layer` and `block` must be in range (a programming error otherwise). The pointer stays valid for the
    /// cache's lifetime, but the block may be given to another sequence once released: do not keep it beyond
    /// the current step.
    @inlinable
    public func layerBlock(layer: Int, block: Int32) -> UnsafeMutableRawPointer {
        precondition(layer >= 0 && layer < layout.layers, "KV layer \(layer) out of range 0..<\(layout.layers)")
        precondition(block >= 0 && Int(block) < blockCount, "KV block \(block) out of range 0..<\(blockCount)")
        return layerBase(layer) + Int(block) * layout.layerBlockBytes
    }

    @usableFromInline
    func layerBase(_ layer: Int) -> UnsafeMutableRawPointer { storage[layer] }

    // MARK: Prefix cache

    /// Enters the full blocks of `seq` holding `tokens` (its first `tokens.count` positions; a trailing partial
    /// block is left out) in the prefix index under `namespace` (how the KV was computed: blocks computed one way
    /// never stand in for another). Block `b` is entered with `namespaces(b)`; a block already indexed (adopted,
    /// or entered before) stays as it is. Registration stops at the first block whose hash another block holds
    /// already: the ones after it would hang off a parent the index does not hold.
    public func registerPrefix(
        _ seq: SequenceID, tokens: [Int32], namespace: (Int) -> UInt64
    ) throws(InferenceError) {
        let sequence = try state(seq)
        guard tokens.count <= sequence.tokenCount else {
            throw InferenceError(
                .invalidArgument, "cannot register \(tokens.count) tokens of \(seq): it holds \(sequence.tokenCount)")
        }
        let size = layout.blockSize
        var parentHash: UInt64 = 0
        var parent: BlockReference?
        for index in 0..<(tokens.count / size) {
            let block = sequence.blocks[index]
            let blockTokens = Array(tokens[(index * size)..<((index + 1) * size)])
            let space = namespace(index)
            let hash = PrefixHash.block(parent: parentHash, namespace: space, tokens: blockTokens)
            if let entry = indexed[block] {
                guard entry.hash == hash, entry.parent == parent else { return }
            } else {
                if let other = prefixIndex[hash] {
                    // A live holder of the hash keeps it; one whose parent was evicted can never match again.
                    guard let entry = indexed[other], !isLive(entry) else { return }
                    drop(other)
                }
                clock += 1
                indexed[block] = IndexedBlock(hash: hash, namespace: space, tokens: blockTokens, parent: parent, tick: clock)
                prefixIndex[hash] = block
                heldHashes?.insert(hash)
            }
            parentHash = hash
            parent = BlockReference(block: block, epoch: epochs[Int(block)])
        }
    }

    /// Gives the empty sequence `seq` the longest indexed prefix of `tokens` whose blocks were entered under
    /// `namespace(b)`, in whole blocks of at most `limit` tokens; returns how many tokens it now holds. Its next
    /// `append` starts after them.
    public func adoptPrefix(
        _ seq: SequenceID, tokens: [Int32], namespace: (Int) -> UInt64, limit: Int
    ) throws(InferenceError) -> Int {
        let sequence = try state(seq)
        let size = layout.blockSize
        guard sequence.tokenCount == 0, sequence.blocks.isEmpty else {
            throw InferenceError(.invalidArgument, "\(seq) already holds \(sequence.tokenCount) tokens: only an empty sequence adopts a prefix")
        }
        var found: [Int32] = []
        var parentHash: UInt64 = 0
        var parent: BlockReference?
        let usable = min(tokens.count, max(limit, 0))
        for index in 0..<(usable / size) {
            let blockTokens = tokens[(index * size)..<((index + 1) * size)]
            let space = namespace(index)
            let hash = PrefixHash.block(parent: parentHash, namespace: space, tokens: blockTokens)
            guard let block = prefixIndex[hash], let entry = indexed[block], entry.namespace == space,
                entry.parent == parent, entry.tokens.elementsEqual(blockTokens)
            else { break }
            found.append(block)
            parentHash = hash
            parent = BlockReference(block: block, epoch: epochs[Int(block)])
        }
        let keep = found.count
        guard keep > 0 else { return 0 }
        for block in found[..<keep] {
            if referenceCounts[Int(block)] == 0 { evictableCount -= 1 }
            referenceCounts[Int(block)] += 1
            clock += 1
            indexed[block]?.tick = clock
        }
        sequences[seq] = SequenceState(blocks: Array(found[..<keep]), tokenCount: keep * size)
        return keep * size
    }

    /// Whether an indexed block's parent is still the block it was computed after.
    private func isLive(_ entry: IndexedBlock) -> Bool {
        guard let parent = entry.parent else { return true }
        return indexed[parent.block] != nil && epochs[Int(parent.block)] == parent.epoch
    }

    /// Takes a block out of the index; an unreferenced one becomes plainly free.
    private func drop(_ block: Int32) {
        unindex(block)
        if referenceCounts[Int(block)] == 0 {
            evictableCount -= 1
            freeList.append(block)
        }
    }

    /// For tests of the token check: points `hash` at the block indexed under `existing`, as a colliding hash would.
    func forgeIndex(hash: UInt64, block existing: UInt64) { prefixIndex[hash] = prefixIndex[existing] }

    /// Eviction-queue entries not yet consumed, stale ones included (tests: it stays bounded).
    var evictionBacklog: Int { evictionQueue.count - evictionHead }

    /// Whether `block` is in the prefix index (its content must then never change).
    func isIndexed(_ block: Int32) -> Bool { indexed[block] != nil }

    // MARK: Internals shared with the transfer extension

    func state(_ seq: SequenceID) throws(InferenceError) -> SequenceState {
        guard let sequence = sequences[seq] else {
            throw InferenceError(.unknownSequence, "\(seq) is not a live sequence of this KV cache")
        }
        return sequence
    }

    /// Registers a new sequence over freshly allocated blocks for `tokenCount` tokens (import).
    func createSequence(tokenCount: Int) throws(InferenceError) -> SequenceID {
        let needed = layout.blocks(forTokens: tokenCount)
        guard needed <= freeBlockCount else {
            throw InferenceError(
                .kvCacheFull,
                "importing \(tokenCount) tokens needs \(needed) free blocks, \(freeBlockCount) of \(blockCount) free")
        }
        let blocks = (0..<needed).map { _ in takeFreeBlock() }
        let id = SequenceID(rawValue: nextSequenceID)
        nextSequenceID += 1
        sequences[id] = SequenceState(blocks: blocks, tokenCount: tokenCount)
        return id
    }

    /// A free block, else the least recently used cached one, evicted (callers check `freeBlockCount` first).
    private func takeFreeBlock() -> Int32 {
        let block: Int32
        if let free = freeList.popLast() {
            block = free
        } else {
            block = evictLeastRecentlyUsed()
        }
        referenceCounts[Int(block)] = 1
        return block
    }

    private func release(_ block: Int32) {
        referenceCounts[Int(block)] -= 1
        guard referenceCounts[Int(block)] == 0 else { return }
        if var entry = indexed[block] {
            clock += 1
            entry.tick = clock
            indexed[block] = entry
            evictionQueue.append((block, clock))
            evictableCount += 1
            // Entries go stale when their block is adopted again; without evictions they would pile up.
            if evictionQueue.count - evictionHead > 2 * blockCount + 64 {
                evictionQueue = evictionQueue[evictionHead...].filter { entry in
                    referenceCounts[Int(entry.block)] == 0 && indexed[entry.block]?.tick == entry.tick
                }
                evictionHead = 0
            }
        } else {
            freeList.append(block)
        }
    }

    private func evictLeastRecentlyUsed() -> Int32 {
        while evictionHead < evictionQueue.count {
            let (block, tick) = evictionQueue[evictionHead]
            evictionHead += 1
            guard referenceCounts[Int(block)] == 0, let entry = indexed[block], entry.tick == tick else { continue }
            evictableCount -= 1
            unindex(block)
            compactEvictionQueue()
            return block
        }
        preconditionFailure("the prefix cache counted \(evictableCount) evictable blocks and found none")
    }

    /// Drops the consumed front of the eviction queue once it is most of the array.
    private func compactEvictionQueue() {
        guard evictionHead > 64, evictionHead * 2 > evictionQueue.count else { return }
        evictionQueue.removeFirst(evictionHead)
        evictionHead = 0
    }

    /// Takes `block` out of the prefix index (its children stop matching: their parent reference is stale).
    private func unindex(_ block: Int32) {
        guard let entry = indexed.removeValue(forKey: block) else { return }
        if prefixIndex[entry.hash] == block {
            prefixIndex[entry.hash] = nil
            heldHashes?.remove(entry.hash)
        }
        epochs[Int(block)] &+= 1
    }

    private func copyBlock(from source: Int32, to destination: Int32) {
        let bytes = layout.layerBlockBytes
        for layer in 0..<layout.layers {
            let base = storage[layer]
            (base + Int(destination) * bytes).copyMemory(from: base + Int(source) * bytes, byteCount: bytes)
        }
    }
}
