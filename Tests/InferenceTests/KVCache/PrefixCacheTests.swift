import Testing
import Generation
@testable import Inference

/// The paged cache's prefix index: full blocks entered by their token ids, shared by later sequences, evicted
/// least recently used, never trusted on a hash alone.
@Suite("Prefix cache")
struct PrefixCacheTests {
    static let one: @Sendable (Int) -> UInt64 = { _ in 1 }

    /// A cache of blockSize 4 with `tokens` written (position p holds tag p) and entered in the index, then freed.
    static func cached(_ cache: PagedKVCache, _ tokens: [Int32], namespace: @escaping @Sendable (Int) -> UInt64 = one) throws {
        let seq = cache.createSequence()
        try cache.appendFilled(seq, count: tokens.count, firstTag: 0)
        try cache.registerPrefix(seq, tokens: tokens, namespace: namespace)
        cache.free(seq)
    }

    @Test("the held hashes mirror the index: what a router hashes from the token ids, until the blocks are evicted")
    func heldHashesMirrorTheIndex() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        let held = HeldBlockHashes(blockSize: 4)
        cache.heldHashes = held
        try Self.cached(cache, Array(1...10))
        #expect(held.current == Set(PrefixHash.chain(Array(1...10), blockSize: 4, namespace: 1)))
        #expect(held.current.count == 2, "the partial third block is not indexed")
        // Room for four new blocks evicts both cached ones.
        try Self.cached(cache, Array(101...116))
        #expect(held.current == Set(PrefixHash.chain(Array(101...116), blockSize: 4, namespace: 1)))
        // A kept partial block will be written again: it leaves the index, and the mirror.
        let seq = cache.createSequence()
        #expect(try cache.adoptPrefix(seq, tokens: Array(101...116), namespace: Self.one, limit: 16) == 16)
        try cache.truncate(seq, to: 14)
        #expect(held.current == Set(PrefixHash.chain(Array(101...112), blockSize: 4, namespace: 1)))
        cache.free(seq)
    }

    @Test("a later sequence adopts the longest indexed prefix and shares its blocks, holding their KV")
    func adoptsLongestPrefix() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 8)
        let tokens: [Int32] = Array(1...10)
        try Self.cached(cache, tokens)
        #expect(cache.cachedBlockCount == 2, "two full blocks of four; the last two tokens are a partial block")
        #expect(cache.freeBlockCount == 8, "cached blocks count as free")

        let next = cache.createSequence()
        let adopted = try cache.adoptPrefix(next, tokens: Array(1...8) + [99, 98, 97], namespace: Self.one, limit: 10)
        #expect(adopted == 8)
        #expect(try cache.tokenCount(next) == 8)
        for position in 0..<8 { #expect(try cache.holds(next, position: position, tag: Float(position))) }
        #expect(cache.freeBlockCount == 6)
        // The next append writes fresh blocks, never the shared ones.
        try cache.appendFilled(next, count: 3, firstTag: 50)
        let other = cache.createSequence()
        #expect(try cache.adoptPrefix(other, tokens: tokens, namespace: Self.one, limit: 10) == 8)
        for position in 0..<8 { #expect(try cache.holds(other, position: position, tag: Float(position))) }
    }

    @Test("a different token, namespace or a limit cut the adopted prefix")
    func matchesAreExact() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 8)
        let tokens: [Int32] = Array(1...12)
        try Self.cached(cache, tokens)
        func adopt(_ tokens: [Int32], namespace: @escaping @Sendable (Int) -> UInt64 = Self.one, limit: Int = 100) throws -> Int {
            let seq = cache.createSequence()
            defer { cache.free(seq) }
            return try cache.adoptPrefix(seq, tokens: tokens, namespace: namespace, limit: limit)
        }
        #expect(try adopt(tokens) == 12)
        #expect(try adopt([1, 2, 3, 4, 5, 0, 7, 8, 9, 10, 11, 12]) == 4, "a changed token in block 1 stops the match there")
        #expect(try adopt([0] + Array(2...12)) == 0)
        #expect(try adopt(tokens, namespace: { _ in 2 }) == 0, "KV computed another way never stands in")
        #expect(try adopt(tokens, namespace: { $0 < 2 ? 1 : 2 }) == 8)
        #expect(try adopt(tokens, limit: 11) == 8, "at most the limit, in whole blocks")
        #expect(try adopt(Array(1...7)) == 4, "a partial block is not adopted")
    }

    @Test("when room is needed the least recently used cached block goes first, never one in use")
    func evictsLeastRecentlyUsed() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        try Self.cached(cache, [1, 2, 3, 4])  // block A
        try Self.cached(cache, [5, 6, 7, 8])  // block B
        // Touch A: adopted and released again, so B is now the older one.
        let touch = cache.createSequence()
        #expect(try cache.adoptPrefix(touch, tokens: [1, 2, 3, 4, 0], namespace: Self.one, limit: 4) == 4)
        cache.free(touch)
        let holder = cache.createSequence()
        #expect(try cache.adoptPrefix(holder, tokens: [1, 2, 3, 4], namespace: Self.one, limit: 4) == 4)
        // Two free blocks and B: three blocks fit, taking B; A is in use and stays.
        let big = cache.createSequence()
        try cache.appendFilled(big, count: 12, firstTag: 100)
        #expect(cache.cachedBlockCount == 1)
        #expect(throws: InferenceError.self) { try cache.append(big, count: 1) }
        cache.free(big)
        let probe = cache.createSequence()
        #expect(try cache.adoptPrefix(probe, tokens: [5, 6, 7, 8], namespace: Self.one, limit: 4) == 0, "B was evicted")
        #expect(try cache.holds(holder, position: 0, tag: 0), "A's KV was never overwritten")
        cache.free(probe)
        cache.free(holder)
        #expect(cache.freeBlockCount == 4 && cache.totalReferences == 0)
    }

    @Test("a block whose parent was evicted never matches, even when its hash does, and is replaced")
    func staleChildrenNeverMatch() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 3)
        try Self.cached(cache, Array(1...8))  // parent P (tokens 1-4), child C (5-8)
        // Evict P only: hold C, fill the rest.
        let holdChild = cache.createSequence()
        #expect(try cache.adoptPrefix(holdChild, tokens: Array(1...8), namespace: Self.one, limit: 8) == 8)
        cache.free(holdChild)
        let filler = cache.createSequence()
        // Three blocks needed: the free one, then P and C (P released first, so evicted first).
        try cache.appendFilled(filler, count: 5, firstTag: 200)
        #expect(cache.cachedBlockCount == 1, "P went; C is still indexed")
        cache.free(filler)
        // P's tokens come back with different KV (tags 300...): C, computed after the old P, must not follow it.
        let again = cache.createSequence()
        try cache.appendFilled(again, count: 4, firstTag: 300)
        try cache.registerPrefix(again, tokens: Array(1...4), namespace: Self.one)
        cache.free(again)
        let probe = cache.createSequence()
        #expect(try cache.adoptPrefix(probe, tokens: Array(1...8), namespace: Self.one, limit: 8) == 4)
        #expect(try cache.holds(probe, position: 0, tag: 300))
        // Computing 5-8 after the new P replaces the stale child in the index.
        try cache.appendFilled(probe, count: 4, firstTag: 400)
        try cache.registerPrefix(probe, tokens: Array(1...8), namespace: Self.one)
        cache.free(probe)
        let last = cache.createSequence()
        #expect(try cache.adoptPrefix(last, tokens: Array(1...8), namespace: Self.one, limit: 8) == 8)
        #expect(try cache.holds(last, position: 4, tag: 400))
    }

    @Test("a prefix adopted and released over and over keeps the eviction bookkeeping bounded")
    func bookkeepingStaysBounded() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        try Self.cached(cache, Array(1...8))
        for _ in 0..<1000 {
            let seq = cache.createSequence()
            #expect(try cache.adoptPrefix(seq, tokens: Array(1...9), namespace: Self.one, limit: 8) == 8)
            cache.free(seq)
        }
        #expect(cache.evictionBacklog <= 2 * 4 + 64 + 2)
        #expect(cache.freeBlockCount == 4 && cache.cachedBlockCount == 2)
    }

    @Test("a hash collision is caught by the token check")
    func collisionsAreConfirmed() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        try Self.cached(cache, [1, 2, 3, 4])
        // Forge the collision: the index's entry for [9, 9, 9, 9] is the block holding [1, 2, 3, 4].
        let forged = PrefixHash.block(parent: 0, namespace: 1, tokens: [9, 9, 9, 9] as [Int32])
        cache.forgeIndexEntry(hash: forged, asHashOf: [1, 2, 3, 4])
        let seq = cache.createSequence()
        #expect(try cache.adoptPrefix(seq, tokens: [9, 9, 9, 9, 1], namespace: Self.one, limit: 4) == 0)
    }

    @Test("shared and indexed blocks are never import targets, and a truncated indexed block leaves the index")
    func indexedBlocksAreNeverWritten() throws {
        let cache = try PagedKVCache(layout: .smallF32(), blockCount: 4)
        let seq = cache.createSequence()
        try cache.appendFilled(seq, count: 8, firstTag: 0)
        try cache.registerPrefix(seq, tokens: Array(1...8), namespace: Self.one)
        #expect(throws: InferenceError.self) { _ = try cache.importTarget(seq, layer: 0) }
        try cache.truncate(seq, to: 6)
        #expect(cache.cachedBlockCount == 1, "the second block will be written again")
        try cache.appendFilled(seq, count: 2, firstTag: 60)
        cache.free(seq)
        let probe = cache.createSequence()
        #expect(try cache.adoptPrefix(probe, tokens: Array(1...8), namespace: Self.one, limit: 8) == 4)
    }
}

extension PagedKVCache {
    /// Points the index's `hash` at the block indexed for `tokens` (first block), as a colliding hash would.
    func forgeIndexEntry(hash: UInt64, asHashOf tokens: [Int32]) {
        let real = PrefixHash.block(parent: 0, namespace: 1, tokens: tokens)
        forgeIndex(hash: hash, block: real)
    }
}
