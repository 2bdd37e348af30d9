/// SentencePiece's BPE segmentation by token scores, as llama.cpp's `llm_tokenizer_spm_session` runs it for
/// `tokenizer.ggml.model` = `llama` (Llama 1/2, Mistral, Gemma).
///
/// A fragment of text (spaces already escaped to "▁") starts as one symbol per UTF-8 character. Every adjacent
/// pair whose concatenation is a vocabulary entry is a candidate; the candidate whose entry has the highest score
/// merges first (the leftmost on ties), and the new symbol's pairs with its neighbours become candidates. When no
/// candidate is left, each symbol is its vocabulary entry, or — a character the vocabulary lacks — its bytes as
/// byte tokens (`<0xAB>`, "byte fallback").
///
/// llama.cpp also keeps a map to split a symbol that is not an entry back into the pair it was merged from; a
/// merge only ever makes an entry, so with valid UTF-8 input (a Swift `String`) that path is never taken.
struct SentencePieceModel: Sendable {
    let scores: [Float]
    let tokenIDs: [ByteString: Int32]
    /// The token of each byte value for byte fallback: `<0xAB>`, else the byte itself as an entry, else the
    /// unknown token (llama.cpp would fail), else -1 (the byte is dropped).
    let byteTokens: [Int32]

    init(scores: [Float], tokenIDs: [ByteString: Int32], unknownID: Int32?) {
        self.scores = scores
        self.tokenIDs = tokenIDs
        let hex = Array("0123456789ABCDEF".utf8)
        byteTokens = (0..<256).map { byte in
            let spelled = [UInt8(ascii: "<"), UInt8(ascii: "0"), UInt8(ascii: "x"), hex[byte >> 4], hex[byte & 15], UInt8(ascii: ">")]
            return tokenIDs[ByteString(spelled)] ?? tokenIDs[ByteString([UInt8(byte)])] ?? unknownID ?? -1
        }
    }

    /// One symbol: bytes `start..<start+length` of the fragment, linked to its live neighbours.
    struct Symbol {
        var start: Int
        var length: Int
        var previous: Int
        var next: Int
    }

    /// A candidate merge of symbols `left` and `right` (which then spanned `length` bytes).
    struct Bigram {
        var score: Float
        var left: Int
        var right: Int
        var length: Int

        /// Whether `self` merges before `other`: the higher score, then the leftmost.
        func precedes(_ other: Bigram) -> Bool {
            score > other.score || (score == other.score && left < other.left)
        }
    }

    /// Buffers reused across the fragments of one `encode` call.
    struct Scratch {
        var symbols: [Symbol] = []
        var heap: [Bigram] = []
    }

    /// Appends the token ids of `text` (UTF-8, spaces already "▁").
    func encode(_ text: [UInt8], into output: inout [Int32], scratch: inout Scratch) {
        guard !text.isEmpty else { return }
        var symbols = scratch.symbols
        var heap = scratch.heap
        symbols.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        defer {
            scratch.symbols = symbols
            scratch.heap = heap
        }
        var offset = 0
        while offset < text.count {
            let length = min(Self.utf8Length(text[offset]), text.count - offset)
            let index = symbols.count
            symbols.append(Symbol(start: offset, length: length, previous: index - 1, next: offset + length == text.count ? -1 : index + 1))
            offset += length
        }

        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let start = symbols[left].start, length = symbols[left].length + symbols[right].length
            guard let id = tokenIDs[ByteString(Array(text[start..<start + length]))] else { return }
            Self.push(Bigram(score: scores[Int(id)], left: left, right: right, length: length), onto: &heap)
        }
        for i in 1..<max(symbols.count, 1) { tryAdd(i - 1, i) }

        while let bigram = Self.pop(&heap) {
            let left = symbols[bigram.left], right = symbols[bigram.right]
            // A candidate whose symbols have merged since is stale.
            if left.length == 0 || right.length == 0 || left.length + right.length != bigram.length { continue }
            symbols[bigram.left].length += right.length
            symbols[bigram.right].length = 0
            symbols[bigram.left].next = right.next
            if right.next >= 0 { symbols[right.next].previous = bigram.left }
            tryAdd(symbols[bigram.left].previous, bigram.left)
            tryAdd(bigram.left, symbols[bigram.left].next)
        }

        var index = 0
        while index != -1 {
            let symbol = symbols[index]
            let piece = text[symbol.start..<symbol.start + symbol.length]
            if let id = tokenIDs[ByteString(Array(piece))] {
                output.append(id)
            } else {
                for byte in piece where byteTokens[Int(byte)] >= 0 { output.append(byteTokens[Int(byte)]) }
            }
            index = symbol.next
        }
    }

    /// Bytes of the UTF-8 character a byte starts, as llama.cpp's `unicode_len_utf8` counts them (a stray
    /// continuation byte counts as one).
    @inline(__always)
    static func utf8Length(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: 2
        case 0xE: 3
        case 0xF: 4
        default: 1
        }
    }

    private static func push(_ bigram: Bigram, onto heap: inout [Bigram]) {
        heap.append(bigram)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(_ heap: inout [Bigram]) -> Bigram? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < heap.count && heap[left].precedes(heap[best]) { best = left }
            if right < heap.count && heap[right].precedes(heap[best]) { best = right }
            if best == parent { break }
            heap.swapAt(parent, best)
            parent = best
        }
        return top
    }
}
