extension Tokenizer {
    /// The text of `ids`, as llama.cpp's `llama_detokenize(remove_special: false, unparse_special:
    /// renderSpecial)` produces it (with `add_space_prefix`, the first piece loses one leading space).
    ///
    /// Control tokens render as "" unless `renderSpecial`; user-defined tokens always render. Ids
    /// outside the vocabulary contribute nothing: check untrusted ids with `validate(_:)` first. Bytes
    /// that do not form complete UTF-8 (a multi-byte character cut by the end of `ids`) become U+FFFD.
    public func decode(_ ids: [Int32], renderSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(ids, renderSpecial: renderSpecial), as: UTF8.self)
    }

    /// The raw bytes of `ids`; see `decode(_:renderSpecial:)`.
    public func decodeBytes(_ ids: [Int32], renderSpecial: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for (index, id) in ids.enumerated() {
            let start = bytes.count
            appendPiece(id, renderSpecial: renderSpecial, to: &bytes)
            if index == 0 && addSpacePrefix && bytes.count > start && bytes[start] == UInt8(ascii: " ") {
                bytes.remove(at: start)
            }
        }
        if cleanSpaces { Self.cleanSpaces(&bytes) }
        return bytes
    }

    /// The bytes of one token as llama.cpp's `token_to_piece(special: renderSpecial)` gives them.
    public func piece(_ id: Int32, renderSpecial: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        appendPiece(id, renderSpecial: renderSpecial, to: &bytes)
        return bytes
    }

    @inline(__always)
    func appendPiece(_ id: Int32, renderSpecial: Bool, to bytes: inout [UInt8]) {
        guard isValid(id) else { return }
        if !renderSpecial && !attributes[Int(id)].isDisjoint(with: [.unknown, .control]) { return }
        bytes.append(contentsOf: pieces[Int(id)])
    }

    /// llama.cpp's `clean_spaces` passes: drop the space before `?!.,`, around a lone `'`, and before
    /// the contractions `'s 'm 're 've`.
    static func cleanSpaces(_ text: inout [UInt8]) {
        let space = UInt8(ascii: " "), quote = UInt8(ascii: "'")
        guard text.count > 1 else { return }

        var total = 1
        for index in 1..<text.count {
            let byte = text[index]
            if text[index - 1] == space, [UInt8(ascii: "?"), UInt8(ascii: "!"), UInt8(ascii: "."), UInt8(ascii: ",")]
                .contains(byte)
            {
                total -= 1
            }
            text[total] = byte
            total += 1
        }
        text.removeSubrange(total...)

        guard text.count > 1 else { return }
        let count2 = text.count
        total = 1
        var index = 1
        while index < count2 {
            let byte = text[index]
            if byte == quote && index + 1 < count2 && text[index - 1] == space && text[index + 1] == space {
                total -= 1
                index += 1
                text[index] = 0
            }
            text[total] = byte
            total += 1
            index += 1
        }
        text.removeSubrange(total...)

        guard text.count > 1 else { return }
        let count3 = text.count
        total = 1
        for index in 1..<count3 {
            let byte = text[index]
            if text[index - 1] == space && byte == quote && index + 1 < count3 {
                let next = text[index + 1]
                if next == UInt8(ascii: "s") || next == UInt8(ascii: "m") {
                    total -= 1
                } else if index + 2 < count3 {
                    let afterNext = text[index + 2]
                    if (next == UInt8(ascii: "r") && afterNext == UInt8(ascii: "e"))
                        || (next == UInt8(ascii: "v") && afterNext == UInt8(ascii: "e"))
                    {
                        total -= 1
                    }
                }
            }
            text[total] = byte
            total += 1
        }
        text.removeSubrange(total...)
    }
}
