/// A tokenizer that produces exactly llama.cpp's token ids for the same vocabulary: byte-level BPE
/// (`tokenizer.ggml.model` = `gpt2`: GPT-2, Llama 3, Qwen, SmolLM) or SentencePiece (`llama`: Llama 2, Mistral,
/// Gemma).
///
/// Built once from a model's vocabulary (`init(gguf:)`, or the plain-array initializer for tests and other
/// sources), then immutable: every method may be called from any thread at the same time.
///
/// Encoding follows llama.cpp's `llama_vocab::impl::tokenize`: special-token text is cut out first
/// (`parseSpecial`); for BPE each remaining fragment is split into words by the pre-tokenizer named by
/// `tokenizer.ggml.pre` and each word's bytes are merged by rank; for SentencePiece each fragment's spaces become
/// "▁" (with one prepended after a special token when `add_space_prefix`) and its characters are merged by score
/// (`SentencePieceModel`). Decoding follows `token_to_piece` and `detokenize` (without removing BOS/EOS).
public final class Tokenizer: Sendable {
    /// Number of entries in the vocabulary; valid ids are `0..<vocabularySize`.
    public let vocabularySize: Int
    /// The beginning-of-sequence token. As in llama.cpp, a model that names none gets id 11 (BPE) or 1
    /// (SentencePiece).
    public let bosID: Int32?
    /// The end-of-sequence token. As in llama.cpp, a model that names none gets id 11 (BPE) or 2 (SentencePiece).
    public let eosID: Int32?
    /// The end-of-turn token: `tokenizer.ggml.eot_token_id`, else the first of llama.cpp's known
    /// end-of-turn texts (`<|eot_id|>`, `<|im_end|>`, `<|endoftext|>`...) in the vocabulary.
    public let eotID: Int32?
    /// Whether `encode(_:addSpecial: true)` prepends BOS (`tokenizer.ggml.add_bos_token`, else the
    /// pre-tokenizer's default in llama.cpp).
    public let addBOS: Bool
    /// Whether `encode(_:addSpecial: true)` appends EOS (`tokenizer.ggml.add_eos_token`, default false).
    public let addEOS: Bool
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    public let model: String
    /// `tokenizer.ggml.pre` (`default` for SentencePiece, which has no pre-tokenizer).
    public let pre: String
    /// SentencePiece only: whether a fragment that starts the text or follows a special token gets a leading
    /// space (`tokenizer.ggml.add_space_prefix`, default true), which `decode` then drops from the first piece.
    public let addSpacePrefix: Bool

    let tokenTexts: [String]
    let attributes: [TokenAttributes]
    /// Each token's piece as llama.cpp's `token_to_piece(special: true)` renders it.
    let pieces: [[UInt8]]
    let tokenIDs: [ByteString: Int32]
    /// Tokens cut out of text before BPE, longest text first (llama.cpp's `cache_special_tokens`).
    let specialTokens: [Int32]
    let endOfGenerationIDs: Set<Int32>
    /// Tidy spaces before punctuation when decoding (llama.cpp's `clean_spaces`; never for SentencePiece).
    let cleanSpaces: Bool
    let segmentation: Segmentation

    /// How text between special tokens becomes ids.
    enum Segmentation: Sendable {
        /// Words from the pre-tokenizer, merged by rank; `ignoreMerges`: a word that is itself a token is taken
        /// whole.
        case bytePair(BytePairModel, PreTokenizer, ignoreMerges: Bool)
        case sentencePiece(SentencePieceModel)
    }

    /// Builds a tokenizer from the raw vocabulary arrays of a model file.
    ///
    /// - Parameters:
    ///   - tokens: `tokenizer.ggml.tokens`, the vocabulary in id order (GPT-2 byte-encoded spellings for BPE,
    ///     "▁" for spaces for SentencePiece).
    ///   - tokenTypes: `tokenizer.ggml.token_type`, one per token (1 normal, 3 control, 4 user-defined...);
    ///     nil makes every token normal.
    ///   - merges: `tokenizer.ggml.merges`, `"left right"` in rank order (BPE only).
    ///   - scores: `tokenizer.ggml.scores`, one per token (SentencePiece only; nil scores every token 0).
    ///   - model: `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    ///   - pre: `tokenizer.ggml.pre`; for BPE `smollm`, `gpt-2`, `llama-bpe`, `qwen2` and their llama.cpp
    ///     aliases; ignored for SentencePiece.
    ///   - addSpacePrefix: `tokenizer.ggml.add_space_prefix` (SentencePiece only); nil when absent.
    ///   - unknownID: `tokenizer.ggml.unknown_token_id`; SentencePiece falls back to it for a byte without a
    ///     byte token.
    ///   - bosID, eosID, eotID, eomID: the special-token ids from the file; nil when the file has none.
    ///   - fimPadID, fimRepID, fimSepID: fill-in-the-middle ids from the file, which llama.cpp counts as
    ///     end of generation; nil when absent (they are then found by their usual texts).
    ///   - addBOS, addEOS: `tokenizer.ggml.add_bos_token` / `add_eos_token`; nil when absent.
    public init(
        tokens: [String],
        tokenTypes: [Int32]? = nil,
        merges: [String] = [],
        scores: [Float]? = nil,
        model: String = "gpt2",
        pre: String,
        addSpacePrefix: Bool? = nil,
        unknownID: Int32? = nil,
        bosID: Int32? = nil,
        eosID: Int32? = nil,
        eotID: Int32? = nil,
        eomID: Int32? = nil,
        fimPadID: Int32? = nil,
        fimRepID: Int32? = nil,
        fimSepID: Int32? = nil,
        addBOS: Bool? = nil,
        addEOS: Bool? = nil
    ) throws(TokenizationError) {
        let isSentencePiece: Bool
        var configuration: PreTokenizer.Configuration?
        switch model {
        case "gpt2":
            isSentencePiece = false
            configuration = PreTokenizer.configuration(forPre: pre)
            guard configuration != nil else {
                throw TokenizationError(
                    .unsupportedPreTokenizer,
                    "pre-tokenizer '\(pre)' is not supported; supported: smollm, gpt-2, llama-bpe, qwen2 "
                        + "and their llama.cpp aliases"
                )
            }
        case "llama":
            isSentencePiece = true
        default:
            throw TokenizationError(
                .unsupportedModel,
                "tokenizer model '\(model)' is not supported; byte-level BPE ('gpt2') and SentencePiece ('llama') are"
            )
        }
        guard !tokens.isEmpty else {
            throw TokenizationError(.invalidVocabulary, "the vocabulary is empty")
        }
        if let tokenTypes, tokenTypes.count < tokens.count {
            throw TokenizationError(
                .invalidVocabulary,
                "token_type has \(tokenTypes.count) entries for \(tokens.count) tokens"
            )
        }
        if let scores, scores.count < tokens.count {
            throw TokenizationError(.invalidVocabulary, "scores has \(scores.count) entries for \(tokens.count) tokens")
        }
        let count = tokens.count
        self.vocabularySize = count
        self.model = model
        self.pre = pre
        self.addSpacePrefix = isSentencePiece && (addSpacePrefix ?? true)
        self.cleanSpaces = configuration?.cleanSpaces ?? false

        var texts = tokens
        var tokenIDs: [ByteString: Int32] = [:]
        tokenIDs.reserveCapacity(count)
        for index in 0..<count {
            if texts[index].isEmpty { texts[index] = "[EMPTY_\(index)]" }
            let key = ByteString(Array(texts[index].utf8))
            if let existing = tokenIDs.updateValue(Int32(index), forKey: key) {
                throw TokenizationError(
                    .invalidVocabulary,
                    "duplicate token in vocabulary: '\(texts[index])' has ids \(existing) and \(index)"
                )
            }
        }
        self.tokenTexts = texts
        self.tokenIDs = tokenIDs

        var attributes = (0..<count).map { index in
            tokenTypes.map { TokenAttributes(ggufTokenType: $0[index]) } ?? .normal
        }

        // Special ids: the file's value when in range, else llama.cpp's default for the model when in range.
        func resolve(_ fromFile: Int32?, default defaultID: Int32?) -> Int32? {
            if let fromFile, fromFile >= 0, Int(fromFile) < count { return fromFile }
            if let defaultID, Int(defaultID) < count { return defaultID }
            return nil
        }
        let bos = resolve(bosID, default: isSentencePiece ? 1 : 11)
        let eos = resolve(eosID, default: isSentencePiece ? 2 : 11)
        let unknown = resolve(unknownID, default: isSentencePiece ? 0 : nil)
        var eot = resolve(eotID, default: nil)
        var eom = resolve(eomID, default: nil)
        var fimPad = resolve(fimPadID, default: nil)
        var fimRep = resolve(fimRepID, default: nil)
        var fimSep = resolve(fimSepID, default: nil)

        let addBOS = addBOS ?? configuration?.addBOSDefault ?? true
        let addEOS = addEOS ?? false
        if addBOS && bos == nil {
            throw TokenizationError(.invalidVocabulary, "add_bos_token is true, but bos_token_id is not set")
        }
        if addEOS && eos == nil {
            throw TokenizationError(.invalidVocabulary, "add_eos_token is true, but eos_token_id is not set")
        }
        self.bosID = bos
        self.eosID = eos
        self.addBOS = addBOS
        self.addEOS = addEOS

        // llama.cpp finds the ids a file does not name by their usual texts, and makes those tokens
        // control tokens, which changes how they are matched and rendered.
        func detect(_ slot: inout Int32?, _ candidates: Set<String>) {
            guard slot == nil else { return }
            for index in 0..<count where candidates.contains(texts[index]) {
                slot = Int32(index)
                attributes[index].insert(.control)
                return
            }
        }
        detect(&eot, KnownTokenTexts.endOfTurn)
        detect(&eom, ["<|eom_id|>"])
        var fimPre: Int32?, fimSuf: Int32?, fimMid: Int32?
        detect(&fimPre, KnownTokenTexts.fimPrefix)
        detect(&fimSuf, KnownTokenTexts.fimSuffix)
        detect(&fimMid, KnownTokenTexts.fimMiddle)
        detect(&fimPad, KnownTokenTexts.fimPad)
        detect(&fimRep, KnownTokenTexts.fimRepo)
        detect(&fimSep, ["<|file_sep|>"])
        self.eotID = eot

        for index in 0..<count where attributes[index].contains(.control) && texts[index].contains("unused") {
            attributes[index].insert(.unused)
        }

        var endOfGeneration: Set<Int32> = []
        for id in [fimPad, fimRep, fimSep] { if let id { endOfGeneration.insert(id) } }
        for index in 0..<count where KnownTokenTexts.endOfGeneration.contains(texts[index]) {
            endOfGeneration.insert(Int32(index))
            attributes[index].insert(.control)
        }
        for index in 0..<count where KnownTokenTexts.alwaysRendered.contains(texts[index]) {
            attributes[index] = .userDefined
        }
        for id in [eos, eot, eom] { if let id { endOfGeneration.insert(id) } }
        // gpt-oss and solar-open use "<|end|>" between messages, not at the end of generation.
        let eogTexts = Set(endOfGeneration.map { texts[Int($0)] })
        if (eogTexts.contains("<|return|>") && eogTexts.contains("<|call|>") && eogTexts.contains("<|end|>"))
            || ((eogTexts.contains("<|call|>") || eogTexts.contains("<|calls|>"))
                && eogTexts.contains("<|flush|>") && eogTexts.contains("<|end|>"))
        {
            if let end = endOfGeneration.first(where: { texts[Int($0)] == "<|end|>" }) {
                endOfGeneration.remove(end)
                attributes[Int(end)] = .userDefined
            }
        }
        if eogTexts.contains("<|tool_response>"),
           let closing = endOfGeneration.first(where: { texts[Int($0)] == "</s>" })
        {
            endOfGeneration.remove(closing)
            attributes[Int(closing)] = .normal
        }
        self.endOfGenerationIDs = endOfGeneration
        self.attributes = attributes

        let specialCandidates = (0..<count).filter {
            !attributes[$0].isDisjoint(with: [.control, .userDefined, .unknown])
        }
        let textLengths = texts.map { $0.utf8.count }
        self.specialTokens = specialCandidates
            .sorted { textLengths[$0] != textLengths[$1] ? textLengths[$0] > textLengths[$1] : $0 < $1 }
            .map { Int32($0) }

        self.pieces = (0..<count).map { index in
            Self.renderPiece(text: texts[index], attributes: attributes[index], sentencePiece: isSentencePiece)
        }
        if let configuration {
            self.segmentation = .bytePair(
                BytePairModel(vocabularySize: count, tokenID: tokenIDs, merges: merges),
                PreTokenizer(kind: configuration.kind), ignoreMerges: configuration.ignoreMerges)
        } else {
            self.segmentation = .sentencePiece(
                SentencePieceModel(
                    scores: scores.map { Array($0.prefix(count)) } ?? [Float](repeating: 0, count: count),
                    tokenIDs: tokenIDs, unknownID: unknown))
        }
    }

    /// llama.cpp's `token_to_piece(special: true)`: a normal token is its GPT-2-decoded bytes (BPE) or its
    /// text with "▁" as space (SentencePiece).
    private static func renderPiece(text: String, attributes: TokenAttributes, sentencePiece: Bool) -> [UInt8] {
        if !attributes.isDisjoint(with: [.unknown, .control, .userDefined]) {
            return Array(text.utf8)
        }
        if attributes.contains(.normal) {
            return sentencePiece ? unescapeWhitespace(Array(text.utf8)) : ByteEncoding.decode(text)
        }
        if attributes.contains(.byte) {
            // "<0xAB>": the byte is the two hex digits at offset 3.
            let utf8 = Array(text.utf8)
            guard utf8.count >= 5, let value = UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
            else { return [] }
            return [value]
        }
        return []
    }

    /// "▁" (U+2581) back to " ", as llama.cpp's `llama_unescape_whitespace`.
    static func unescapeWhitespace(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if i + 2 < bytes.count && bytes[i] == 0xE2 && bytes[i + 1] == 0x96 && bytes[i + 2] == 0x81 {
                out.append(UInt8(ascii: " "))
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    // MARK: - Queries

    /// The attributes of a token, or nil for an id outside the vocabulary.
    public func attributes(of id: Int32) -> TokenAttributes? {
        isValid(id) ? attributes[Int(id)] : nil
    }

    /// Whether generation should stop at this token: EOS, EOT, EOM and every token llama.cpp treats as
    /// end of generation by its text (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`...).
    public func isEndOfGeneration(_ id: Int32) -> Bool {
        endOfGenerationIDs.contains(id)
    }

    /// All end-of-generation ids, sorted.
    public var endOfGenerationTokens: [Int32] { endOfGenerationIDs.sorted() }

    /// The vocabulary entry (its GPT-2 byte-encoded spelling), or "" for an id outside the vocabulary.
    public func tokenText(_ id: Int32) -> String {
        isValid(id) ? tokenTexts[Int(id)] : ""
    }

    /// The raw bytes a token stands for, special tokens rendered as their text; [] for an invalid id.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        isValid(id) ? pieces[Int(id)] : []
    }

    /// The id whose vocabulary entry is exactly `text` (byte for byte), if any.
    public func tokenID(forText text: String) -> Int32? {
        tokenIDs[ByteString(Array(text.utf8))]
    }

    @inline(__always)
    func isValid(_ id: Int32) -> Bool { id >= 0 && Int(id) < vocabularySize }

    /// Throws `.invalidTokenID` naming the first id outside the vocabulary, if any.
    public func validate(_ ids: [Int32]) throws(TokenizationError) {
        if let bad = ids.firstIndex(where: { !isValid($0) }) {
            throw TokenizationError(
                .invalidTokenID,
                "token id \(ids[bad]) at position \(bad) is outside the vocabulary (0..<\(vocabularySize))"
            )
        }
    }
}
