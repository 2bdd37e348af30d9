import GGUF

extension Tokenizer {
    /// Builds the tokenizer of a GGUF model from its `tokenizer.ggml.*` metadata.
    ///
    /// Reads `model`, `pre`, `tokens`, `token_type`, `merges` (BPE) or `scores` (SentencePiece), the
    /// special-token ids (`bos`, `eos`, `unknown`, `eot`, `eom`, `fim_pad`, `fim_rep`, `fim_sep` `_token_id`),
    /// `add_bos_token` / `add_eos_token` and `add_space_prefix`.
    /// Throws `.unsupportedModel` / `.unsupportedPreTokenizer` for tokenizers this module does not
    /// reproduce, and `.invalidVocabulary` (with the GGUF error as cause) for missing or mistyped keys.
    public convenience init(gguf: GGUFFile) throws(TokenizationError) {
        func read<T>(_ what: String, _ body: () throws(GGUFError) -> T) throws(TokenizationError) -> T {
            do {
                return try body()
            } catch {
                throw TokenizationError(
                    .invalidVocabulary, "\(gguf.name): cannot read \(what): \(error.message)", cause: error
                )
            }
        }
        func tokenID(_ key: String) throws(TokenizationError) -> Int32? {
            let value = try read(key) { () throws(GGUFError) in try gguf.optionalInteger(key) }
            guard let value else { return nil }
            // An id that cannot be a token is ignored, as llama.cpp ignores ids past the vocabulary.
            return Int32(exactly: value)
        }

        let model = try read("tokenizer.ggml.model") { () throws(GGUFError) in
            try gguf.string("tokenizer.ggml.model")
        }
        let pre = try read("tokenizer.ggml.pre") { () throws(GGUFError) in
            try gguf.optionalString("tokenizer.ggml.pre")
        }
        guard model == "gpt2" || model == "llama" else {
            throw TokenizationError(
                .unsupportedModel,
                "\(gguf.name): tokenizer model '\(model)' is not supported; byte-level BPE ('gpt2') and "
                    + "SentencePiece ('llama') are"
            )
        }
        if model == "gpt2" && pre == nil {
            throw TokenizationError(
                .unsupportedPreTokenizer,
                "\(gguf.name): no tokenizer.ggml.pre; llama.cpp would fall back to its degraded 'default' "
                    + "pre-tokenizer, which is not supported"
            )
        }
        let tokens = try read("tokenizer.ggml.tokens") { () throws(GGUFError) in
            try gguf.stringArray("tokenizer.ggml.tokens")
        }
        var merges: [String] = []
        var scores: [Float]?
        if model == "gpt2" {
            merges = try read("tokenizer.ggml.merges") { () throws(GGUFError) in
                try gguf.stringArray("tokenizer.ggml.merges")
            }
        } else if gguf.contains("tokenizer.ggml.scores") {
            scores = try read("tokenizer.ggml.scores") { () throws(GGUFError) in
                try gguf.floatArray("tokenizer.ggml.scores")
            }
        }
        var tokenTypes: [Int32]?
        if gguf.contains("tokenizer.ggml.token_type") {
            let types = try read("tokenizer.ggml.token_type") { () throws(GGUFError) in
                try gguf.integerArray("tokenizer.ggml.token_type")
            }
            tokenTypes = types.map { Int32(truncatingIfNeeded: $0) }
        }
        let addBOS = try read("tokenizer.ggml.add_bos_token") { () throws(GGUFError) in
            try gguf.optionalBool("tokenizer.ggml.add_bos_token")
        }
        let addEOS = try read("tokenizer.ggml.add_eos_token") { () throws(GGUFError) in
            try gguf.optionalBool("tokenizer.ggml.add_eos_token")
        }
        let addSpacePrefix = try read("tokenizer.ggml.add_space_prefix") { () throws(GGUFError) in
            try gguf.optionalBool("tokenizer.ggml.add_space_prefix")
        }
        do {
            try self.init(
                tokens: tokens,
                tokenTypes: tokenTypes,
                merges: merges,
                scores: scores,
                model: model,
                pre: pre ?? "default",
                addSpacePrefix: addSpacePrefix,
                unknownID: try tokenID("tokenizer.ggml.unknown_token_id"),
                bosID: try tokenID("tokenizer.ggml.bos_token_id"),
                eosID: try tokenID("tokenizer.ggml.eos_token_id"),
                eotID: try tokenID("tokenizer.ggml.eot_token_id"),
                eomID: try tokenID("tokenizer.ggml.eom_token_id"),
                fimPadID: try tokenID("tokenizer.ggml.fim_pad_token_id"),
                fimRepID: try tokenID("tokenizer.ggml.fim_rep_token_id"),
                fimSepID: try tokenID("tokenizer.ggml.fim_sep_token_id"),
                addBOS: addBOS,
                addEOS: addEOS
            )
        } catch {
            throw TokenizationError(error.code, "\(gguf.name): \(error.message)", cause: error.cause)
        }
    }
}
