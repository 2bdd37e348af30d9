import Testing
@testable import Inference

@Suite("Paged KV cache")
struct PagedKVCacheTests {
    @Test("a new cache has every block free and zeroed storage, 64-byte aligned")
    func freshCache() throws {
        let layout = KVCacheLayout(layers: 2, kvHeads: 3, headDim: 64, blockSize: 16)
        let cache = try PagedKVCache(layout: layout, blockCount: 5)
        #expect(cache.freeBlockCount == 5)
        #expect(cache.totalReferences == 0)
        #expect(layout.layerBlockElements == 2 * 3 * 16 * 64)
        #expect(layout.layerBlockBytes == 2 * 3 * 16 * 64 * 2)
        #expect(cache.storageByteCount == 5 * layout.layerBlockBytes * 2)
        for layer in 0..<2 {
            let base = cache.layerBlock(layer: layer, block: 0)
            #expect(Int(bitPattern: base) % 64 == 0)
            let bytes = UnsafeRawBufferPointer(start: base, count: 5 * layout.layerBlockBytes)
            #expect(bytes.allSatisfy { $0 == 0 })
            #expect(cache.layerBlock(layer: layer, block: 3) == base + 3 * layout.layerBlockBytes)
        }
        #expect(cache.layerBlock(layer: 0, block: 0) != cache.layerBlock(layer: 1, block: 0))
    }

    @Test("invalid layouts and block counts are refused with a message naming the value")
    func invalidConstruction() {
        let zeroBlocks = thrownInferenceError { _ = try PagedKVCache(layout: .smallF32(), blockCount: 0) }
        #expect(zeroBlocks?.code == .invalidArgument)
        #expect(zeroBlocks?.message.contains("blockCount") == true)
        var layout = KVCacheLayout.smallF32()
        layout.layers = 0
        let zeroLayers = thrownInferenceError { _ = try PagedKVCache(layout: layout, blockCount: 4) }
        #expect(zeroLayers?.code == .invalidArgument)
        #expect(zeroLayers?.message.contains("layers must be in 1...4096, got 0") == true)
        layout = .smallF32()
        layout.headDim = -3
        #expect(thrownInferenceError { _ = try PagedKVCache(layout: layout, blockCount: 4) }?.code == .invalidArgument)
    }

    @Test("a pool larger than the address space is refused, not crashed on")
    func unmappablePool() {
        // 30 layers × 2^31 blocks × 12 KiB ≈ 790 TB: more than any x86-64 or arm64 user address space.
        let layout = KVCacheLayout(layers: 30, kvHeads: 3, headDim: 64)
        let error = thrownInferenceError { _ = try PagedKVCache(layout: layout, blockCount: Int(Int32.max)) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("cannot map") == true)
    }

    @Test("append allocates blocks on demand and returns the first new position")
    func appendAllocatesOnDemand() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 8)
        let seq = cache.createSequence()
        #expect(try cache.tokenCount(seq) == 0)
        #expect(try cache.blockTable(seq).isEmpty)
        #expect(try cache.append(seq, count: 1) == 0)
        #expect(try cache.blockTable(seq) == [0])
        #expect(try cache.append(seq, count: 3) == 1)
        #expect(try cache.blockTable(seq) == [0])
        #expect(try cache.append(seq, count: 1) == 4)
        #expect(try cache.blockTable(seq) == [0, 1])
        #expect(try cache.append(seq, count: 0) == 5)
        #expect(try cache.append(seq, count: 7) == 5)
        #expect(try cache.tokenCount(seq) == 12)
        #expect(try cache.blockTable(seq) == [0, 1, 2])
        #expect(cache.freeBlockCount == 5)
        let negative = thrownInferenceError { try cache.append(seq, count: -1) }
        #expect(negative?.code == .invalidArgument)
        #expect(try cache.tokenCount(seq) == 12)
    }

    @Test("operations on an unknown sequence throw unknownSequence; freeing one does nothing")
    func unknownSequence() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        let seq = cache.createSequence()
        cache.free(seq)
        #expect(!cache.contains(seq))
        #expect(thrownInferenceError { _ = try cache.tokenCount(seq) }?.code == .unknownSequence)
        #expect(thrownInferenceError { _ = try cache.blockTable(seq) }?.code == .unknownSequence)
        #expect(thrownInferenceError { try cache.append(seq, count: 1) }?.code == .unknownSequence)
        #expect(thrownInferenceError { _ = try cache.fork(seq) }?.code == .unknownSequence)
        #expect(thrownInferenceError { try cache.truncate(seq, to: 0) }?.code == .unknownSequence)
        #expect(thrownInferenceError { _ = try cache.descriptor(seq) }?.code == .unknownSequence)
        #expect(thrownInferenceError { _ = try cache.exportLayer(seq, layer: 0) }?.code == .unknownSequence)
        #expect(thrownInferenceError { try cache.importLayer(seq, layer: 0, bytes: []) }?.code == .unknownSequence)
        let message = thrownInferenceError { _ = try cache.tokenCount(SequenceID(rawValue: 99)) }?.description
        #expect(message == "unknown sequence: seq#99 is not a live sequence of this KV cache")
        cache.free(seq)
        cache.free(SequenceID(rawValue: 12345))
        #expect(cache.freeBlockCount == 4)
    }

    @Test("fork shares blocks; appending to both copies the shared partial block once and leaves the prefix untouched")
    func forkCopyOnWrite() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 8)
        let a = cache.createSequence()
        try cache.appendFilled(a, count: 6, firstTag: 1)  // blocks [0, 1], block 1 half full
        let b = try cache.fork(a)
        #expect(try cache.blockTable(b) == [0, 1])
        #expect(try cache.tokenCount(b) == 6)
        #expect(cache.referenceCount(ofBlock: 0) == 2)
        #expect(cache.referenceCount(ofBlock: 1) == 2)
        #expect(cache.freeBlockCount == 6)

        // a writes next: its shared partial last block is replaced by a private copy.
        #expect(try cache.append(a, count: 1) == 6)
        let tableA = try cache.blockTable(a)
        #expect(tableA[0] == 0)
        #expect(tableA[1] != 1)
        #expect(cache.referenceCount(ofBlock: 1) == 1)
        #expect(cache.referenceCount(ofBlock: tableA[1]) == 1)
        try cache.fill(a, position: 6, tag: 100)

        // b is now the only owner of block 1 and writes in place, without copying.
        #expect(try cache.append(b, count: 1) == 6)
        #expect(try cache.blockTable(b) == [0, 1])
        try cache.fill(b, position: 6, tag: 200)
        #expect(cache.freeBlockCount == 5)

        for position in 0..<6 {
            #expect(try cache.holds(a, position: position, tag: 1 + Float(position)))
            #expect(try cache.holds(b, position: position, tag: 1 + Float(position)))
        }
        #expect(try cache.holds(a, position: 6, tag: 100))
        #expect(try cache.holds(b, position: 6, tag: 200))
        #expect(cache.referenceCount(ofBlock: 0) == 2)
    }

    @Test("a fork whose last block is full gets new blocks on append, nothing is copied")
    func forkFullBlock() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 8)
        let a = cache.createSequence()
        try cache.appendFilled(a, count: 8, firstTag: 1)
        let b = try cache.fork(a)
        try cache.appendFilled(a, count: 1, firstTag: 50)
        try cache.appendFilled(b, count: 1, firstTag: 60)
        #expect(try cache.blockTable(a) == [0, 1, 2])
        #expect(try cache.blockTable(b) == [0, 1, 3])
        #expect(cache.freeBlockCount == 4)
        #expect(try cache.holds(a, position: 8, tag: 50))
        #expect(try cache.holds(b, position: 8, tag: 60))
        #expect(try cache.holds(b, position: 7, tag: 8))
    }

    @Test("truncate frees whole blocks only and keeps a fork's data intact")
    func truncate() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 8)
        let a = cache.createSequence()
        try cache.appendFilled(a, count: 10, firstTag: 1)  // [0, 1, 2]
        try cache.truncate(a, to: 9)
        #expect(try cache.blockTable(a) == [0, 1, 2])
        try cache.truncate(a, to: 8)
        #expect(try cache.blockTable(a) == [0, 1])
        #expect(cache.freeBlockCount == 6)
        let longer = thrownInferenceError { try cache.truncate(a, to: 9) }
        #expect(longer?.code == .invalidArgument)
        #expect(longer?.message.contains("holds 8") == true)
        #expect(thrownInferenceError { try cache.truncate(a, to: -1) }?.code == .invalidArgument)

        // Truncating into a shared block makes it a shared partial block: the next append must copy it.
        let b = try cache.fork(a)
        try cache.truncate(a, to: 6)
        #expect(try cache.blockTable(a) == [0, 1])
        #expect(cache.referenceCount(ofBlock: 1) == 2)
        try cache.appendFilled(a, count: 1, firstTag: 77)
        #expect(try cache.blockTable(a)[1] != 1)
        for position in 0..<8 { #expect(try cache.holds(b, position: position, tag: 1 + Float(position))) }
        for position in 0..<6 { #expect(try cache.holds(a, position: position, tag: 1 + Float(position))) }
        #expect(try cache.holds(a, position: 6, tag: 77))

        try cache.truncate(b, to: 0)
        #expect(try cache.blockTable(b).isEmpty)
        #expect(try cache.tokenCount(b) == 0)
        cache.free(a)
        cache.free(b)
        #expect(cache.freeBlockCount == 8)
    }

    @Test("a full pool refuses an append and leaves the sequence and the pool unchanged")
    func fullPoolRefusal() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 4)
        let a = cache.createSequence()
        try cache.appendFilled(a, count: 10, firstTag: 1)  // 3 blocks
        let b = cache.createSequence()
        try cache.append(b, count: 2)  // the last block
        let error = thrownInferenceError { try cache.append(b, count: 3) }
        #expect(error?.code == .kvCacheFull)
        #expect(error?.message.contains("needs 1 free blocks, 0 of 4 free") == true)
        #expect(try cache.tokenCount(b) == 2)
        #expect(try cache.blockTable(b) == [3])
        #expect(cache.freeBlockCount == 0)
        // Filling the partial block needs no new block.
        #expect(try cache.append(b, count: 2) == 2)

        // Copy-on-write also needs a block: refused cleanly when there is none.
        cache.free(b)
        let c = try cache.fork(a)
        let d = cache.createSequence()
        try cache.append(d, count: 4)
        #expect(cache.freeBlockCount == 0)
        #expect(thrownInferenceError { try cache.append(c, count: 1) }?.code == .kvCacheFull)
        #expect(try cache.blockTable(c) == [0, 1, 2])
        #expect(try cache.tokenCount(c) == 10)
        #expect(cache.referenceCount(ofBlock: 2) == 2)
        for position in 0..<10 { #expect(try cache.holds(c, position: position, tag: 1 + Float(position))) }
    }

    @Test("after any mix of operations, freeing everything returns the whole pool with no references left")
    func referenceCountsBalance() throws {
        let cache = try PagedKVCache(layout: .smallF32(blockSize: 4), blockCount: 64)
        var rng = Xoshiro256StarStar(seed: 7)
        var live: [SequenceID] = []
        for _ in 0..<2000 {
            switch rng.next() % 5 {
            case 0:
                live.append(cache.createSequence())
            case 1 where !live.isEmpty:
                let seq = live[Int(rng.next() % UInt64(live.count))]
                _ = try? cache.append(seq, count: Int(rng.next() % 9))
            case 2 where !live.isEmpty:
                live.append(try cache.fork(live[Int(rng.next() % UInt64(live.count))]))
            case 3 where !live.isEmpty:
                let seq = live[Int(rng.next() % UInt64(live.count))]
                try cache.truncate(seq, to: Int(rng.next() % UInt64(try cache.tokenCount(seq) + 1)))
            case 4 where !live.isEmpty:
                cache.free(live.remove(at: Int(rng.next() % UInt64(live.count))))
            default:
                break
            }
            // Invariants: every sequence holds exactly the blocks its tokens need; references add up.
            var references = 0
            for seq in live {
                let table = try cache.blockTable(seq)
                #expect(table.count == cache.layout.blocks(forTokens: try cache.tokenCount(seq)))
                references += table.count
            }
            #expect(references == cache.totalReferences)
            let used = (0..<Int32(cache.blockCount)).filter { cache.referenceCount(ofBlock: $0) > 0 }.count
            #expect(used + cache.freeBlockCount == cache.blockCount)
        }
        for seq in live { cache.free(seq) }
        #expect(cache.freeBlockCount == 64)
        #expect(cache.totalReferences == 0)
        #expect(cache.sequenceCount == 0)
    }
}
