/// One generation as a backend sees it: token ids in, token ids out. Text (detokenizing, stop strings) is the
/// business of whoever renders it — the router, the CLI — never of the workers.
public struct GenerationRequest: Sendable, Equatable {
    /// Unique among the requests in flight (the OpenAI response id); names the request's KV on every worker
    /// and in every log line.
    public var id: String
    /// The rendered and tokenized prompt, special tokens included; at least one token.
    public var prompt: [Int32]
    /// Most tokens to generate, the end-of-generation token included; at least 1. The edge checks that prompt
    /// plus this fits the context.
    public var maxNewTokens: Int
    /// Always with a seed (see `SamplingParameters.seed`).
    public var sampling: SamplingParameters
    /// Sampling one of these ends the generation (finish reason `.stopToken`), besides the model's own
    /// end-of-generation tokens. The token is not emitted.
    public var stopTokenIDs: Set<Int32>

    /// The longest request id accepted (ids travel in every RPC and log line).
    public static let maximumIDLength = 256

    public init(
        id: String, prompt: [Int32], maxNewTokens: Int, sampling: SamplingParameters, stopTokenIDs: Set<Int32> = []
    ) {
        self.id = id
        self.prompt = prompt
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopTokenIDs = stopTokenIDs
    }

    /// Returns `self` if it can run on a model with `vocabularySize` tokens and `contextLength` positions, else
    /// throws naming the field: `.invalidArgument`, or `.contextLengthExceeded` when the prompt plus
    /// `maxNewTokens` do not fit (the message says both numbers and the limit, as OpenAI's and vLLM's do).
    public func validated(vocabularySize: Int, contextLength: Int) throws(GenerationError) -> Self {
        guard !id.isEmpty, id.utf8.count <= Self.maximumIDLength else {
            throw GenerationError(
                .invalidArgument, "the request id must have 1...\(Self.maximumIDLength) bytes, got \(id.utf8.count)",
                param: "id")
        }
        guard !prompt.isEmpty else { throw GenerationError(.invalidArgument, "the prompt is empty", param: "prompt") }
        for token in prompt { try Self.checkToken("prompt", token, vocabularySize) }
        guard maxNewTokens >= 1 else {
            throw GenerationError(.invalidArgument, "max_tokens must be at least 1, got \(maxNewTokens)", param: "max_tokens")
        }
        guard prompt.count < contextLength else {
            throw GenerationError(
                .contextLengthExceeded,
                "This model's maximum context length is \(contextLength) tokens. However, your prompt resulted in "
                    + "\(prompt.count) tokens, which leaves no room for a completion. Please reduce the length of the prompt.",
                param: "prompt")
        }
        guard prompt.count + maxNewTokens <= contextLength else {
            throw GenerationError(
                .contextLengthExceeded,
                "This model's maximum context length is \(contextLength) tokens. However, you requested "
                    + "\(prompt.count + maxNewTokens) tokens (\(prompt.count) in the prompt, \(maxNewTokens) in the "
                    + "completion). Please reduce the length of the prompt or of max_tokens (at most "
                    + "\(contextLength - prompt.count) here).",
                param: "max_tokens")
        }
        let sampling = try self.sampling.validated(vocabularySize: vocabularySize)
        guard sampling.seed != nil else {
            throw GenerationError(.invalidArgument, "the sampling parameters carry no seed", param: "seed")
        }
        for token in stopTokenIDs.sorted() { try Self.checkToken("stop token id", token, vocabularySize) }
        return self
    }

    static func checkToken(_ name: String, _ token: Int32, _ vocabularySize: Int?) throws(GenerationError) {
        guard token >= 0, vocabularySize.map({ Int(token) < $0 }) ?? true else {
            let range = vocabularySize.map { "a token id in 0..<\($0)" } ?? "a token id >= 0"
            throw SamplingParameters.outOfRange(name, "\(token)", range)
        }
    }
}
