/// The split of text into words that byte-level BPE then merges within, exactly as llama.cpp's
/// `llm_tokenizer_bpe` + `unicode_regex_split` do it for a given `tokenizer.ggml.pre`.
///
/// llama.cpp does not run these regexes through a regex engine for the common pre-tokenizers; it runs
/// hand-written scanners (`unicode_regex_split_custom_gpt2`, `..._llama3`) whose edge cases (a whitespace
/// run at the end of a piece, contractions only in lower case...) define the token ids. The scanners
/// below follow those functions branch for branch, on arrays of scalars and their `CodepointFlags`.
struct PreTokenizer: Sendable, Equatable {
    /// The regex families llama.cpp uses.
    enum Kind: Sendable, Equatable {
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (GPT-2).
        case gpt2
        /// First `\p{N}` (every digit its own word), then the GPT-2 regex on the rest (SmolLM, StarCoder).
        case digitsThenGPT2
        /// `(?i:'s|…)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
        /// with `maxDigits` 3 (Llama 3) or 1 (Qwen2, whose regex has `\p{N}` alone).
        case llama3(maxDigits: Int)
    }

    /// How llama.cpp's vocabulary loader configures itself for one `tokenizer.ggml.pre` value.
    struct Configuration: Sendable, Equatable {
        var kind: Kind
        /// Look a whole word up in the vocabulary before merging (`ignore_merges`).
        var ignoreMerges = false
        /// Tidy spaces before punctuation when decoding (`clean_spaces`, Hugging Face's
        /// `clean_up_tokenization_spaces`).
        var cleanSpaces = true
        /// Whether BOS is added when the model file does not say (`add_bos` default).
        var addBOSDefault = false
    }

    /// The configuration llama.cpp derives from `tokenizer.ggml.pre`, or nil for a pre-tokenizer this
    /// implementation does not reproduce.
    static func configuration(forPre pre: String) -> Configuration? {
        switch pre {
        case "smollm", "command-r":
            return Configuration(kind: .digitsThenGPT2, cleanSpaces: false)
        case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
            return Configuration(kind: .digitsThenGPT2)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "a.x-4.0", "mellum", "mpt", "olmo", "jais",
             "exaone4":
            return Configuration(kind: .gpt2)
        case "trillion", "granite-docling":
            return Configuration(kind: .gpt2, cleanSpaces: false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            return Configuration(kind: .llama3(maxDigits: 3), ignoreMerges: true, addBOSDefault: true)
        case "dbrx", "smaug-bpe":
            return Configuration(kind: .llama3(maxDigits: 3))
        case "qwen2", "deepseek-r1-qwen":
            return Configuration(kind: .llama3(maxDigits: 1), cleanSpaces: false)
        case "stablelm2", "megrez":
            return Configuration(kind: .llama3(maxDigits: 1))
        default:
            return nil
        }
    }

    let kind: Kind

    /// Buffers reused across calls, so splitting does not allocate per fragment.
    struct Workspace {
        var scalars: [UInt32] = []
        var flags: [CodepointFlags] = []
        /// Byte offset of each scalar, plus the end of the text.
        var offsets: [Int] = []
        var scalarEnds: [Int] = []
        /// The result: the end byte offset (exclusive) of each word, in order.
        var wordEnds: [Int] = []
    }

    /// Splits the UTF-8 text `bytes[range]` into words, leaving their end offsets in `workspace.wordEnds`
    /// (the first word starts at `range.lowerBound`).
    func split(_ bytes: [UInt8], _ range: Range<Int>, _ workspace: inout Workspace) {
        workspace.scalars.removeAll(keepingCapacity: true)
        workspace.flags.removeAll(keepingCapacity: true)
        workspace.offsets.removeAll(keepingCapacity: true)
        workspace.scalarEnds.removeAll(keepingCapacity: true)
        workspace.wordEnds.removeAll(keepingCapacity: true)
        Self.decodeScalars(bytes, range, &workspace)
        split(scalars: workspace.scalars, flags: workspace.flags, ends: &workspace.scalarEnds)
        for end in workspace.scalarEnds { workspace.wordEnds.append(workspace.offsets[end]) }
    }

    /// Decodes UTF-8 into scalars, their flags and byte offsets. Input comes from a Swift `String`, so it
    /// is well-formed; a malformed byte would be classified as U+FFFD and consumed alone, never trapping.
    static func decodeScalars(_ bytes: [UInt8], _ range: Range<Int>, _ workspace: inout Workspace) {
        workspace.scalars.reserveCapacity(range.count)
        workspace.flags.reserveCapacity(range.count)
        workspace.offsets.reserveCapacity(range.count + 1)
        let table = CodepointClassifier.basicPlane
        let end = range.upperBound
        var index = range.lowerBound
        while index < end {
            let lead = UInt32(bytes[index])
            var scalar: UInt32
            var length: Int
            if lead < 0x80 {
                scalar = lead
                length = 1
            } else if lead & 0xE0 == 0xC0, index + 1 < end {
                scalar = (lead & 0x1F) << 6 | UInt32(bytes[index + 1] & 0x3F)
                length = 2
            } else if lead & 0xF0 == 0xE0, index + 2 < end {
                scalar = (lead & 0x0F) << 12 | UInt32(bytes[index + 1] & 0x3F) << 6 | UInt32(bytes[index + 2] & 0x3F)
                length = 3
            } else if lead & 0xF8 == 0xF0, index + 3 < end {
                scalar = (lead & 0x07) << 18 | UInt32(bytes[index + 1] & 0x3F) << 12
                    | UInt32(bytes[index + 2] & 0x3F) << 6 | UInt32(bytes[index + 3] & 0x3F)
                length = 4
            } else {
                scalar = 0xFFFD
                length = 1
            }
            workspace.scalars.append(scalar)
            workspace.flags.append(
                scalar < 0x10000
                    ? CodepointFlags(rawValue: table[Int(scalar)]) : CodepointClassifier.computeFlags(scalar)
            )
            workspace.offsets.append(index)
            index += length
        }
        workspace.offsets.append(end)
    }

    /// Appends to `ends` the end index (exclusive, in scalars) of every word of `scalars`; `flags` holds the
    /// `CodepointFlags` of each scalar.
    func split(
        scalars: [UInt32],
        flags: [CodepointFlags],
        ends: inout [Int]
    ) {
        let count = scalars.count
        switch kind {
        case .gpt2:
            Self.splitGPT2(scalars, flags, 0, count, &ends)
        case .digitsThenGPT2:
            var start = 0
            var position = 0
            while position < count {
                if flags[position].isNumber {
                    if start < position { Self.splitGPT2(scalars, flags, start, position, &ends) }
                    position += 1
                    ends.append(position)
                    start = position
                } else {
                    position += 1
                }
            }
            if start < count { Self.splitGPT2(scalars, flags, start, count, &ends) }
        case .llama3(let maxDigits):
            Self.splitLlama3(scalars, flags, 0, count, maxDigits, &ends)
        }
    }

    private static let outOfRange: UInt32 = 0xFFFF_FFFF
    private static let apostrophe = UInt32(UInt8(ascii: "'"))
    private static let space = UInt32(UInt8(ascii: " "))
    private static let carriageReturn = UInt32(UInt8(ascii: "\r"))
    private static let lineFeed = UInt32(UInt8(ascii: "\n"))

    /// Is `(first, second)` the tail of a contraction of two letters ('re, 've, 'll)?
    @inline(__always)
    private static func isTwoLetterContraction(_ first: UInt32, _ second: UInt32) -> Bool {
        let r = UInt32(UInt8(ascii: "r")), v = UInt32(UInt8(ascii: "v"))
        let l = UInt32(UInt8(ascii: "l")), e = UInt32(UInt8(ascii: "e"))
        return (first == r && second == e) || (first == v && second == e) || (first == l && second == l)
    }

    @inline(__always)
    private static func isOneLetterContraction(_ letter: UInt32) -> Bool {
        letter == UInt32(UInt8(ascii: "s")) || letter == UInt32(UInt8(ascii: "t"))
            || letter == UInt32(UInt8(ascii: "m")) || letter == UInt32(UInt8(ascii: "d"))
    }

    @inline(__always)
    private static func asciiLower(_ scalar: UInt32) -> UInt32 {
        (scalar >= 0x41 && scalar <= 0x5A) ? scalar + 0x20 : scalar
    }

    /// llama.cpp's `unicode_regex_split_custom_gpt2` on `scalars[start..<end]`.
    private static func splitGPT2(
        _ scalars: [UInt32],
        _ flags: [CodepointFlags],
        _ start: Int,
        _ end: Int,
        _ ends: inout [Int]
    ) {
        @inline(__always) func scalar(_ position: Int) -> UInt32 { position < end ? scalars[position] : outOfRange }
        @inline(__always) func flag(_ position: Int) -> CodepointFlags { position < end ? flags[position] : [] }

        var position = start
        while position < end {
            let current = scalars[position]
            let currentFlags = flags[position]

            // 's|'t|'re|'ve|'m|'ll|'d (lower case only)
            if current == apostrophe && position + 1 < end {
                let next = scalars[position + 1]
                if isOneLetterContraction(next) {
                    position += 2
                    ends.append(position)
                    continue
                }
                if position + 2 < end && isTwoLetterContraction(next, scalars[position + 2]) {
                    position += 3
                    ends.append(position)
                    continue
                }
            }

            var lookahead = current == space ? flag(position + 1) : currentFlags
            // <space>?\p{L}+
            if lookahead.isLetter {
                if current == space { position += 1 }
                while lookahead.isLetter {
                    position += 1
                    lookahead = flag(position)
                }
                ends.append(position)
                continue
            }
            // <space>?\p{N}+
            if lookahead.isNumber {
                if current == space { position += 1 }
                while lookahead.isNumber {
                    position += 1
                    lookahead = flag(position)
                }
                ends.append(position)
                continue
            }
            // <space>?[^\s\p{L}\p{N}]+
            if lookahead.isOtherThanSpaceLetterNumber {
                if current == space { position += 1 }
                while lookahead.isOtherThanSpaceLetterNumber {
                    position += 1
                    lookahead = flag(position)
                }
                ends.append(position)
                continue
            }

            var whitespaceCount = 0
            while flag(position + whitespaceCount).isWhitespace { whitespaceCount += 1 }
            // \s+(?!\S): a run followed by more text leaves its last scalar to the next word.
            if whitespaceCount > 1 && scalar(position + whitespaceCount) != outOfRange {
                position += whitespaceCount - 1
                ends.append(position)
                continue
            }
            // \s+
            if whitespaceCount > 0 {
                position += whitespaceCount
                ends.append(position)
                continue
            }
            position += 1
            ends.append(position)
        }
    }

    /// llama.cpp's `unicode_regex_split_custom_llama3` on `scalars[start..<end]`, with the digit group
    /// length as a parameter (3 for Llama 3; 1 reproduces Qwen2's `\p{N}`).
    private static func splitLlama3(
        _ scalars: [UInt32],
        _ flags: [CodepointFlags],
        _ start: Int,
        _ end: Int,
        _ maxDigits: Int,
        _ ends: inout [Int]
    ) {
        @inline(__always) func scalar(_ position: Int) -> UInt32 { position < end ? scalars[position] : outOfRange }
        @inline(__always) func flag(_ position: Int) -> CodepointFlags { position < end ? flags[position] : [] }
        var lastEnd = start
        @inline(__always) func add(_ wordEnd: Int) {
            if wordEnd > lastEnd { ends.append(wordEnd) }
            lastEnd = wordEnd
        }

        var position = start
        while position < end {
            let current = scalars[position]
            let currentFlags = flags[position]

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if current == apostrophe && position + 1 < end {
                let next = asciiLower(scalars[position + 1])
                if isOneLetterContraction(next) {
                    position += 2
                    add(position)
                    continue
                }
                if position + 2 < end && isTwoLetterContraction(next, asciiLower(scalars[position + 2])) {
                    position += 3
                    add(position)
                    continue
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(current == carriageReturn || current == lineFeed || currentFlags.isNumber) {
                if currentFlags.isLetter || flag(position + 1).isLetter {
                    position += 1
                    while flag(position).isLetter { position += 1 }
                    add(position)
                    continue
                }
            }

            // \p{N}{1,maxDigits}
            if currentFlags.isNumber {
                var groupStart = position
                while flag(position).isNumber {
                    position += 1
                    if position - groupStart >= maxDigits {
                        add(position)
                        groupStart = position
                    }
                }
                add(position)
                continue
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the current scalar's flags for being in
            // range, not the lookahead's; kept so a lone trailing space splits the same way)
            var lookahead = current == space ? flag(position + 1) : currentFlags
            if lookahead.isNeitherSpaceLetterNorNumber && currentFlags.rawValue != 0 {
                if current == space { position += 1 }
                while lookahead.isOtherThanSpaceLetterNumber {
                    position += 1
                    lookahead = flag(position)
                }
                var following = scalar(position)
                while following == carriageReturn || following == lineFeed {
                    position += 1
                    following = scalar(position)
                }
                add(position)
                continue
            }

            var whitespaceCount = 0
            var lastNewlineEnd = 0
            while flag(position + whitespaceCount).isWhitespace {
                let whitespace = scalar(position + whitespaceCount)
                if whitespace == carriageReturn || whitespace == lineFeed {
                    lastNewlineEnd = position + whitespaceCount + 1
                }
                whitespaceCount += 1
            }
            // \s*[\r\n]+
            if lastNewlineEnd > 0 {
                position = lastNewlineEnd
                add(position)
                continue
            }
            // \s+(?!\S)
            if whitespaceCount > 1 && scalar(position + whitespaceCount) != outOfRange {
                position += whitespaceCount - 1
                add(position)
                continue
            }
            // \s+
            if whitespaceCount > 0 {
                position += whitespaceCount
                add(position)
                continue
            }
            position += 1
            add(position)
        }
    }
}

/// The character classes of one Unicode scalar, bit for bit as llama.cpp's `unicode_cpt_flags` has them
/// (`src/unicode.h`), so the pre-tokenizers split text exactly where llama.cpp splits it.
///
/// llama.cpp derives its table from Python's `regex` module: one general-category bit per scalar
/// (`\p{N}`, `\p{L}`, `\p{Z}`, `\p{M}`, `\p{P}`, `\p{S}`, `\p{C}` — unassigned scalars count as `\p{C}`)
/// plus a separate White_Space bit. We read the same properties from the Swift standard library's
/// Unicode tables; the two can differ only on scalars assigned in a newer Unicode version than one side knows.
///
/// It lives in this file because the scanners above test these bits in their innermost loops, and debug
/// builds only inline across functions of the same file.
struct CodepointFlags: OptionSet, Sendable, Hashable {
    let rawValue: UInt16

    static let undefined = CodepointFlags(rawValue: 0x0001)
    static let number = CodepointFlags(rawValue: 0x0002)
    static let letter = CodepointFlags(rawValue: 0x0004)
    static let separator = CodepointFlags(rawValue: 0x0008)
    static let accentMark = CodepointFlags(rawValue: 0x0010)
    static let punctuation = CodepointFlags(rawValue: 0x0020)
    static let symbol = CodepointFlags(rawValue: 0x0040)
    static let control = CodepointFlags(rawValue: 0x0080)
    static let whitespace = CodepointFlags(rawValue: 0x0100)

    var isNumber: Bool { rawValue & 0x0002 != 0 }
    var isLetter: Bool { rawValue & 0x0004 != 0 }
    var isWhitespace: Bool { rawValue & 0x0100 != 0 }
    var isNeitherSpaceLetterNorNumber: Bool { rawValue & 0x0106 == 0 }
    /// llama.cpp's `[^\s\p{L}\p{N}]` test: a scalar in range that is neither whitespace, letter nor number.
    /// Out-of-range positions carry no bits at all and therefore fail it.
    var isOtherThanSpaceLetterNumber: Bool { rawValue & 0x0106 == 0 && rawValue != 0 }
}
