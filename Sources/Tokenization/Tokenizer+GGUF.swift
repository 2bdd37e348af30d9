import GGUF

extension Tokenizer {
    /// Builds the tokenizer of a GGUF model from its `tokenizer.ggml.*` metadata.
    ///
    /// Reads `model`, `pre`, `tokens`, `token_type`, `merges`, the special-token ids (`bos`, `eos`, `eot`,
    /// `eom`, `fim_pad`, `fim_rep`, `fim_sep` `_token_id`) and `add_bos_token` / `add_eos_token`.
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
        guard model == "gpt2" else {
            throw TokenizationError(
                .unsupportedModel,
                "\(gguf.name): tokenizer model '\(model)' is not supported; only byte-level BPE ('gpt2') is implemented"
            )
        }
        guard let pre else {
            throw TokenizationError(
                .unsupportedPreTokenizer,
                "\(gguf.name): no tokenizer.ggml.pre; llama.cpp would fall back to its degraded 'default' "
                    + "pre-tokenizer, which is not supported"
            )
        }
        let tokens = try read("tokenizer.ggml.tokens") { () throws(GGUFError) in
            try gguf.stringArray("tokenizer.ggml.tokens")
        }
        let merges = try read("tokenizer.ggml.merges") { () throws(GGUFError) in
            try gguf.stringArray("tokenizer.ggml.merges")
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
        do {
            try self.init(
                tokens: tokens,
                tokenTypes: tokenTypes,
                merges: merges,
                model: model,
                pre: pre,
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
