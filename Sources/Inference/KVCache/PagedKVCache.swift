import Foundation

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
        // Reversed so that allocation hands out blocks 0, 1, 2, ... on a fresh cache.
        self.freeList = (0..<Int32(blockCount)).reversed()
    }

    deinit {
        for region in storage { munmap(region, layerByteCount) }
    }

    /// Blocks not referenced by any sequence.
    public var freeBlockCount: Int { freeList.count }

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
        let copyLast = start % layout.blockSize != 0 && referenceCounts[Int(sequence.blocks[sequence.blocks.count - 1])] > 1
        let needed = newBlocks + (copyLast ? 1 : 0)
        guard needed <= freeList.count else {
            throw InferenceError(
                .kvCacheFull,
                "appending \(count) tokens to \(seq) (\(start) tokens) needs \(needed) free blocks, \(freeList.count) of \(blockCount) free")
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
        guard needed <= freeList.count else {
            throw InferenceError(
                .kvCacheFull,
                "importing \(tokenCount) tokens needs \(needed) free blocks, \(freeList.count) of \(blockCount) free")
        }
        let blocks = (0..<needed).map { _ in takeFreeBlock() }
        let id = SequenceID(rawValue: nextSequenceID)
        nextSequenceID += 1
        sequences[id] = SequenceState(blocks: blocks, tokenCount: tokenCount)
        return id
    }

    private func takeFreeBlock() -> Int32 {
        let block = freeList.removeLast()
        referenceCounts[Int(block)] = 1
        return block
    }

    private func release(_ block: Int32) {
        referenceCounts[Int(block)] -= 1
        if referenceCounts[Int(block)] == 0 { freeList.append(block) }
    }

    private func copyBlock(from source: Int32, to destination: Int32) {
        let bytes = layout.layerBlockBytes
        for layer in 0..<layout.layers {
            let base = storage[layer]
            (base + Int(destination) * bytes).copyMemory(from: base + Int(source) * bytes, byteCount: bytes)
        }
    }
}
