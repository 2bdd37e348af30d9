/// Byte-level BPE over token ids: the initial symbol of each byte, the merge table, and the per-word merge
/// loop of llama.cpp's `llm_tokenizer_bpe_session::tokenize`.
///
/// llama.cpp merges strings; we merge ids, which is the same thing because every string a merge can
/// produce gets an id: the vocabulary's own, or a synthetic id past the vocabulary for a merge result the
/// vocabulary lacks. A word that ends on such a synthetic symbol is emitted the way llama.cpp emits a
/// symbol it cannot find: each byte of its spelling looked up as a one-byte token, unknown bytes dropped.
struct BytePairModel: Sendable {
    let vocabularySize: Int
    /// The symbol for each raw byte (its GPT-2 character).
    let byteSymbols: [Int32]
    let merges: MergeTable
    /// For each synthetic symbol (id - vocabularySize): the tokens llama.cpp falls back to.
    let syntheticFallback: [[Int32]]

    /// Builds the model. `tokenID` maps an exact spelling (UTF-8 bytes) to its token id.
    init(vocabularySize: Int, tokenID: [ByteString: Int32], merges mergeLines: [String]) {
        self.vocabularySize = vocabularySize
        var syntheticIDs: [ByteString: Int32] = [:]
        var syntheticSpellings: [ByteString] = []

        func symbol(for spelling: ByteString, create: Bool) -> Int32? {
            if let id = tokenID[spelling] { return id }
            if let id = syntheticIDs[spelling] { return id }
            guard create else { return nil }
            let id = Int32(vocabularySize + syntheticSpellings.count)
            syntheticIDs[spelling] = id
            syntheticSpellings.append(spelling)
            return id
        }

        var byteSymbols = [Int32](repeating: 0, count: 256)
        for byte in 0..<256 {
            byteSymbols[byte] = symbol(for: ByteString(ByteEncoding.utf8ForByte[byte]), create: true)!
        }

        // Split "left right" at the first space after the first byte, as llama.cpp does; a line without
        // one yields an empty pair that can never match.
        var pairs: [(left: ByteString, right: ByteString, result: Int32)] = []
        pairs.reserveCapacity(mergeLines.count)
        for line in mergeLines {
            let bytes = Array(line.utf8)
            guard bytes.count > 1, let space = bytes[1...].firstIndex(of: UInt8(ascii: " ")) else {
                pairs.append((ByteString([]), ByteString([]), -1))
                continue
            }
            let left = ByteString(Array(bytes[..<space]))
            let right = ByteString(Array(bytes[(space + 1)...]))
            let result = symbol(for: ByteString(left.bytes + right.bytes), create: true)!
            pairs.append((left, right, result))
        }

        // Only strings that some symbol can spell (a byte character or a merge result) can ever match.
        var table = MergeTable(minimumCapacity: pairs.count)
        for (rank, pair) in pairs.enumerated() where pair.result >= 0 {
            guard let left = symbol(for: pair.left, create: false),
                  let right = symbol(for: pair.right, create: false)
            else { continue }
            table.insertIfAbsent(left: left, right: right, merge: .init(rank: Int32(rank), result: pair.result))
        }

        self.byteSymbols = byteSymbols
        self.merges = table
        self.syntheticFallback = syntheticSpellings.map { spelling in
            spelling.bytes.compactMap { byte in tokenID[ByteString([byte])] }
        }
    }

    /// Reusable buffers for `encodeWord`, so the hot loop does not allocate per word.
    struct Scratch {
        /// The scan path's word.
        var slots: [Slot] = []
        /// The heap path's symbols, indexed by original byte position and chained by `next`/`previous`.
        var linked: [Int32] = []
        var next: [Int32] = []
        var previous: [Int32] = []
        var heap: [HeapEntry] = []
    }

    struct HeapEntry {
        /// rank << 32 | left index: pops the lowest rank first, then the leftmost pair.
        var order: UInt64
        var right: Int32
        var leftSymbol: Int32
        var rightSymbol: Int32
    }

    /// Words up to this many bytes use the quadratic scan; longer ones the heap.
    static let scanLimit = 64

    /// Appends the token ids of one pre-tokenized word: `bytes[word]`, raw bytes not yet GPT-2 encoded.
    func encodeWord(_ bytes: [UInt8], _ word: Range<Int>, into output: inout [Int32], scratch: inout Scratch) {
        switch word.count {
        case 0:
            return
        case 1:
            emit(byteSymbols[Int(bytes[word.lowerBound])], into: &output)
        case ...Self.scanLimit:
            encodeByScan(bytes, word, into: &output, scratch: &scratch)
        default:
            encodeByHeap(bytes, word, into: &output, scratch: &scratch)
        }
    }

    @inline(__always)
    private func emit(_ symbol: Int32, into output: inout [Int32]) {
        if Int(symbol) < vocabularySize {
            output.append(symbol)
        } else {
            output.append(contentsOf: syntheticFallback[Int(symbol) - vocabularySize])
        }
    }

    /// One symbol of a word being merged, with the merge of it and the symbol after it.
    struct Slot {
        var symbol: Int32
        var rank: Int32
        var result: Int32
    }

    /// Repeatedly merges the lowest-ranked adjacent pair (leftmost on ties): the same order llama.cpp's
    /// priority queue produces.
    private func encodeByScan(
        _ bytes: [UInt8],
        _ word: Range<Int>,
        into output: inout [Int32],
        scratch: inout Scratch
    ) {
        let noMerge = Int32.max
        // Work on a local array (moved out of the scratch space, not copied) so writes need no checks
        // beyond the first.
        var slots: [Slot] = []
        swap(&slots, &scratch.slots)
        defer { swap(&slots, &scratch.slots) }
        if slots.count < Self.scanLimit {
            slots = [Slot](repeating: Slot(symbol: 0, rank: noMerge, result: 0), count: Self.scanLimit)
        }

        @inline(__always) func rate(_ index: Int, _ slots: inout [Slot]) {
            if let merge = merges.merge(slots[index].symbol, slots[index + 1].symbol) {
                slots[index].rank = merge.rank
                slots[index].result = merge.result
            } else {
                slots[index].rank = noMerge
            }
        }
        var count = word.count
        for index in 0..<count { slots[index].symbol = byteSymbols[Int(bytes[word.lowerBound + index])] }
        for index in 0..<(count - 1) { rate(index, &slots) }
        while count > 1 {
            var best = noMerge
            var bestIndex = -1
            for index in 0..<(count - 1) where slots[index].rank < best {
                best = slots[index].rank
                bestIndex = index
            }
            if bestIndex < 0 { break }
            slots[bestIndex].symbol = slots[bestIndex].result
            // Drop symbol bestIndex+1 and the pair that started at it.
            var index = bestIndex + 1
            while index < count - 1 {
                slots[index] = slots[index + 1]
                index += 1
            }
            count -= 1
            if bestIndex > 0 { rate(bestIndex - 1, &slots) }
            if bestIndex < count - 1 { rate(bestIndex, &slots) }
        }
        for index in 0..<count { emit(slots[index].symbol, into: &output) }
    }

    /// The same merge order with a binary heap and a linked list, for long words.
    private func encodeByHeap(
        _ bytes: [UInt8],
        _ word: Range<Int>,
        into output: inout [Int32],
        scratch: inout Scratch
    ) {
        let count = word.count
        scratch.linked = bytes[word].map { byteSymbols[Int($0)] }
        scratch.next = (0..<count).map { $0 + 1 < count ? Int32($0 + 1) : -1 }
        scratch.previous = (0..<count).map { Int32($0 - 1) }
        scratch.heap.removeAll(keepingCapacity: true)

        func push(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0,
                  let merge = merges.merge(scratch.linked[Int(left)], scratch.linked[Int(right)])
            else { return }
            let entry = HeapEntry(
                order: UInt64(UInt32(merge.rank)) << 32 | UInt64(UInt32(left)),
                right: right,
                leftSymbol: scratch.linked[Int(left)],
                rightSymbol: scratch.linked[Int(right)]
            )
            scratch.heap.append(entry)
            var child = scratch.heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                if scratch.heap[parent].order <= scratch.heap[child].order { break }
                scratch.heap.swapAt(parent, child)
                child = parent
            }
        }

        func pop() -> HeapEntry? {
            guard let top = scratch.heap.first else { return nil }
            let last = scratch.heap.removeLast()
            if !scratch.heap.isEmpty {
                scratch.heap[0] = last
                var parent = 0
                let size = scratch.heap.count
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var smallest = parent
                    if left < size && scratch.heap[left].order < scratch.heap[smallest].order { smallest = left }
                    if right < size && scratch.heap[right].order < scratch.heap[smallest].order { smallest = right }
                    if smallest == parent { break }
                    scratch.heap.swapAt(parent, smallest)
                    parent = smallest
                }
            }
            return top
        }

        let dead: Int32 = -2
        for index in 0..<(count - 1) { push(Int32(index), Int32(index + 1)) }
        while let entry = pop() {
            let left = Int(entry.order & 0xFFFF_FFFF)
            let right = Int(entry.right)
            // Stale if either side has since merged with something else.
            guard scratch.previous[left] != dead,
                  scratch.next[left] == entry.right,
                  scratch.linked[left] == entry.leftSymbol,
                  scratch.previous[right] != dead,
                  scratch.linked[right] == entry.rightSymbol,
                  let merge = merges.merge(entry.leftSymbol, entry.rightSymbol)
            else { continue }
            scratch.linked[left] = merge.result
            let after = scratch.next[right]
            scratch.next[left] = after
            if after >= 0 { scratch.previous[Int(after)] = Int32(left) }
            scratch.previous[right] = dead
            push(scratch.previous[left], Int32(left))
            push(Int32(left), after)
        }
        var index: Int32 = 0
        while index >= 0 {
            emit(scratch.linked[Int(index)], into: &output)
            index = scratch.next[Int(index)]
        }
    }
}

/// BPE merge ranks keyed by a pair of symbol ids: an open-addressing hash table over 64-bit keys, because
/// this lookup is the innermost operation of encoding. Keys and values share one array so that a lookup
/// touches one cache line.
///
/// Symbols are token ids, plus synthetic ids past the vocabulary for intermediate strings that a merge
/// produces but the vocabulary lacks (see `BytePairModel`).
struct MergeTable: Sendable {
    /// A merge: its rank (lower merges first) and the symbol it produces.
    struct Merge: Sendable, Equatable {
        var rank: Int32
        var result: Int32
    }

    private struct Entry: Sendable {
        var key: UInt64
        var merge: Merge
    }

    private static let emptyKey = UInt64.max
    private var entries: [Entry]
    private let mask: Int
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity <<= 1 }
        entries = [Entry](repeating: Entry(key: Self.emptyKey, merge: Merge(rank: 0, result: 0)), count: capacity)
        mask = capacity - 1
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        // Fibonacci hashing: the high bits of the product are well mixed.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Adds a merge unless the pair already has one (llama.cpp keeps the first rank for a repeated pair).
    mutating func insertIfAbsent(left: Int32, right: Int32, merge: Merge) {
        let key = Self.key(left, right)
        var index = Self.slot(key, mask)
        while entries[index].key != Self.emptyKey {
            if entries[index].key == key { return }
            index = (index + 1) & mask
        }
        entries[index] = Entry(key: key, merge: merge)
        count += 1
    }

    /// The merge of `left` followed by `right`, if any.
    @inline(__always)
    func merge(_ left: Int32, _ right: Int32) -> Merge? {
        let key = Self.key(left, right)
        var index = Self.slot(key, mask)
        while true {
            let entry = entries[index]
            if entry.key == key { return entry.merge }
            if entry.key == Self.emptyKey { return nil }
            index = (index + 1) & mask
        }
    }
}
