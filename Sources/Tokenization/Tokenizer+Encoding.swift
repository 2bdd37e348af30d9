extension Tokenizer {
    /// Tokens of a prompt the model will continue (a rendered chat or raw text): special tokens parsed, BOS added
    /// when the model asks for it — unless the text already starts with it, as chat templates often write it. The
    /// router, the CLI and the benchmarks all tokenize prompts through this, so one text gives one token list.
    public func encodePrompt(_ text: String) -> [Int32] {
        let bos = bosID.map { tokenText($0) } ?? ""
        let textHasBOS = addBOS && !bos.isEmpty && text.hasPrefix(bos)
        return encode(text, addSpecial: !textHasBOS, parseSpecial: true)
    }

    /// Token ids of `text`, equal to llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// - Parameters:
    ///   - addSpecial: prepend BOS if `addBOS` (and append EOS if `addEOS`). SmolLM2 adds neither.
    ///   - parseSpecial: recognise control-token text such as `<|im_start|>` as that single token.
    ///     Without it such text is tokenized like any other text. User-defined tokens are always
    ///     recognised, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int32] {
        var output: [Int32] = []
        output.reserveCapacity(text.utf8.count / 3 + 2)
        if addSpecial && addBOS, let bosID { output.append(bosID) }
        let bytes = Array(text.utf8)
        var state = EncodingState()
        // SentencePiece prefixes a space to text that starts the input or follows a special token.
        var afterSpecial = true
        for fragment in partition(bytes, parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id):
                output.append(id)
                afterSpecial = true
            case .text(let range):
                encodeFragment(bytes, range, spacePrefix: addSpacePrefix && afterSpecial, into: &output, state: &state)
                afterSpecial = false
            }
        }
        if addSpecial && addEOS, let eosID { output.append(eosID) }
        return output
    }

    /// A piece of the input: text still to be tokenized, or a special token already recognised.
    enum Fragment: Equatable {
        case text(Range<Int>)
        case token(Int32)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest text first, every
    /// occurrence in the remaining text fragments becomes that token. Control and unknown tokens take
    /// part only with `parseSpecial`; user-defined tokens always do.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0..<bytes.count)]
        for id in specialTokens {
            if !parseSpecial && !attributes[Int(id)].isDisjoint(with: [.control, .unknown]) { continue }
            // A special token's piece is its text.
            let needle = pieces[Int(id)]
            var split: [Fragment] = []
            var changed = false
            for fragment in fragments {
                guard case .text(let range) = fragment else {
                    split.append(fragment)
                    continue
                }
                var start = range.lowerBound
                while let match = Self.firstOccurrence(of: needle, in: bytes, from: start, to: range.upperBound) {
                    if match > start { split.append(.text(start..<match)) }
                    split.append(.token(id))
                    start = match + needle.count
                    changed = true
                }
                if start < range.upperBound { split.append(.text(start..<range.upperBound)) }
            }
            if changed { fragments = split }
        }
        return fragments
    }

    private static func firstOccurrence(
        of needle: [UInt8],
        in haystack: [UInt8],
        from start: Int,
        to end: Int
    ) -> Int? {
        let length = needle.count
        guard length > 0, end - start >= length else { return nil }
        let first = needle[0]
        var position = start
        let last = end - length
        while position <= last {
            if haystack[position] == first {
                var offset = 1
                while offset < length && haystack[position + offset] == needle[offset] { offset += 1 }
                if offset == length { return position }
            }
            position += 1
        }
        return nil
    }

    /// Buffers reused across the fragments and words of one `encode` call.
    struct EncodingState {
        var words = PreTokenizer.Workspace()
        var bpe = BytePairModel.Scratch()
        var sentencePiece = SentencePieceModel.Scratch()
        var escaped: [UInt8] = []
    }

    /// Tokenizes the text fragment `bytes[fragment]`: BPE pre-tokenizes it and merges each word; SentencePiece
    /// escapes its spaces as "▁" (after a space of its own when `spacePrefix`) and merges it whole.
    func encodeFragment(
        _ bytes: [UInt8],
        _ fragment: Range<Int>,
        spacePrefix: Bool = false,
        into output: inout [Int32],
        state: inout EncodingState
    ) {
        switch segmentation {
        case .bytePair(let bpe, let preTokenizer, let ignoreMerges):
            preTokenizer.split(bytes, fragment, &state.words)
            var wordStart = fragment.lowerBound
            for wordEnd in state.words.wordEnds {
                let word = wordStart..<wordEnd
                wordStart = wordEnd
                if ignoreMerges, let id = tokenIDs[ByteString(ByteEncoding.encode(bytes[word]))] {
                    output.append(id)
                    continue
                }
                bpe.encodeWord(bytes, word, into: &output, scratch: &state.bpe)
            }
        case .sentencePiece(let model):
            state.escaped.removeAll(keepingCapacity: true)
            let space = UInt8(ascii: " "), escapedSpace: [UInt8] = [0xE2, 0x96, 0x81]
            if spacePrefix { state.escaped += escapedSpace }
            for byte in bytes[fragment] {
                if byte == space { state.escaped += escapedSpace } else { state.escaped.append(byte) }
            }
            model.encode(state.escaped, into: &output, scratch: &state.sentencePiece)
        }
    }
}
