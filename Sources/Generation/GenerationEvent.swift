/// Why a generation ended normally. The one list along the whole path (scheduler, wire, router, CLI); a value
/// from elsewhere that is not on it is an error, never silently "stop".
public enum FinishReason: String, Sendable, CaseIterable {
    /// The model produced an end-of-generation token (not emitted).
    case endOfGeneration = "end_of_generation"
    /// A token of `GenerationRequest.stopTokenIDs` was sampled (not emitted).
    case stopToken = "stop_token"
    /// A stop string appeared in the text; the text ends just before it (matched by whoever renders text).
    case stopString = "stop_string"
    /// `maxNewTokens` tokens were generated.
    case maxTokens = "max_tokens"
    /// The sequence filled the context.
    case contextFull = "context_full"

    /// OpenAI's `finish_reason`.
    public var openAIValue: String {
        switch self {
        case .endOfGeneration, .stopToken, .stopString: "stop"
        case .maxTokens, .contextFull: "length"
        }
    }
}

/// A token id with its natural-log probability.
public struct TokenLogprob: Sendable, Equatable {
    public var id: Int32
    public var logprob: Float

    public init(id: Int32, logprob: Float) {
        self.id = id
        self.logprob = logprob
    }
}

/// One generated token.
///
/// Log-probabilities are the log-softmax of the logits after logit bias and penalties, at temperature 1 and before
/// truncation: they describe the model's (biased, penalised) distribution, not the truncated one drawn from.
public struct GeneratedToken: Sendable, Equatable {
    public var id: Int32
    /// When the request asked for logprobs.
    public var logprob: Float?
    /// The most likely alternatives, best first (ties: lower id first); as many as the request asked for.
    public var topLogprobs: [TokenLogprob]
    /// The sampler's random-generator state right after drawing this token (nil when nothing was drawn: greedy).
    /// Kept by the router in the request's `GenerationState`, so that the generation can continue elsewhere.
    public var random: RandomState?

    public init(id: Int32, logprob: Float? = nil, topLogprobs: [TokenLogprob] = [], random: RandomState? = nil) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
        self.random = random
    }
}

/// How a prompt's KV reached the decode side, when it was computed elsewhere.
public struct KVHandoffSummary: Sendable, Equatable {
    /// The transport's name as metrics, logs and status show it (e.g. `tls-h2`, `shared-memory`).
    public var transport: String
    public var bytes: Int
    /// From the transfer's handshake to its completion.
    public var seconds: Double
    /// Prompt positions whose KV the receiving worker's prefix cache held, so the transfer did not carry them, and
    /// their bytes.
    public var cachedTokens: Int
    public var bytesNotShipped: Int

    public init(transport: String, bytes: Int, seconds: Double, cachedTokens: Int = 0, bytesNotShipped: Int = 0) {
        self.transport = transport
        self.bytes = bytes
        self.seconds = seconds
        self.cachedTokens = cachedTokens
        self.bytesNotShipped = bytesNotShipped
    }
}

/// The cluster workers that served a generation, by the names placement knows them by.
public struct ServingWorkers: Sendable, Equatable {
    /// The worker that ran the prompt; nil when the decode worker ran it too (placement's `decode_only` mode).
    public var prefill: String?
    /// The worker that produced the tokens.
    public var decode: String

    public init(prefill: String?, decode: String) {
        self.prefill = prefill
        self.decode = decode
    }
}

/// The end of a generation.
public struct GenerationSummary: Sendable, Equatable {
    public var reason: FinishReason
    public var promptTokens: Int
    /// Tokens generated, the end-of-generation or stop token included when one was produced.
    public var completionTokens: Int
    /// Present when the prompt's KV came from a prefill worker.
    public var handoff: KVHandoffSummary?
    /// Which cluster workers served the generation; nil when it ran in this process (`baton serve`).
    public var workers: ServingWorkers?

    public init(
        reason: FinishReason, promptTokens: Int, completionTokens: Int, handoff: KVHandoffSummary? = nil,
        workers: ServingWorkers? = nil
    ) {
        self.reason = reason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.handoff = handoff
        self.workers = workers
    }
}

/// What a generation's stream yields: tokens, then exactly one `finished`.
public enum GenerationEvent: Sendable, Equatable {
    case token(GeneratedToken)
    case finished(GenerationSummary)
}
