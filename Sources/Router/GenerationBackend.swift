/// What the router hands to whatever generates tokens: the disaggregated prefill/decode client, or an
/// in-process engine. The router never imports the inference core; it depends only on this protocol.
///
/// ## Contract
/// - ``generate(_:)`` either throws before generation starts (no worker → ``RouterError/Code/noWorkerAvailable``,
///   at capacity → ``RouterError/Code/overloaded`` with `retryAfterSeconds`; anything else is served as a 500), or
///   returns a stream that yields zero or more ``GenerationEvent/token(_:)`` events followed by exactly one
///   ``GenerationEvent/finished(_:)``, then ends. A failure mid-stream is thrown from the stream.
/// - **Cancellation.** The router stops consuming early when the client disconnects, a stop string matches, or the
///   request times out. It does so by cancelling the task that iterates the stream, which makes the stream call
///   its `onTermination` handler with `.cancelled`. Backends must install `continuation.onTermination` and use it
///   to stop generating and free the request's KV cache on every worker. Dropping the stream alone is not a
///   reliable signal (the continuation keeps it alive), so the router always cancels explicitly.
/// - Token ids are the model's vocabulary ids; the router detokenizes (backends send no text).
/// - Implementations must be safe to call concurrently from many requests.
public protocol GenerationBackend: Sendable {
    /// Starts generating for `request`. See the type's contract for errors and cancellation.
    func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, any Error>

    /// Whether a request could be served right now. `GET /health` answers 200 only for ``BackendHealth/ready``.
    func health() async -> BackendHealth
}

/// Whether a backend can serve a request now.
public enum BackendHealth: Sendable, Equatable {
    case ready
    /// Not servable; the reason is shown to the client of `GET /health`.
    case unavailable(reason: String)
}

/// Sampling settings, already validated by the router (ranges as in OpenAI's API).
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy. Range 0...2.
    public var temperature: Float
    /// Nucleus sampling mass. Range 0...1.
    public var topP: Float
    /// Seed for reproducible sampling; nil means the backend picks one.
    public var seed: UInt64?
    /// Range -2...2.
    public var presencePenalty: Float
    /// Range -2...2.
    public var frequencyPenalty: Float
    /// Added to the logit of each token id before sampling. Values in -100...100; ids are in the vocabulary.
    public var logitBias: [Int32: Float]

    public init(
        temperature: Float = 1, topP: Float = 1, seed: UInt64? = nil, presencePenalty: Float = 0,
        frequencyPenalty: Float = 0, logitBias: [Int32: Float] = [:]
    ) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.logitBias = logitBias
    }
}

/// One generation job as the backend sees it: token ids in, token ids out.
public struct GenerationRequest: Sendable, Equatable {
    /// Unique per request (the OpenAI response id); use it to correlate logs and KV on workers.
    public var id: String
    /// The rendered and tokenized prompt, special tokens included.
    public var promptTokens: [Int32]
    /// Upper bound on generated tokens; the router already clamped it so prompt + output fit the context.
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Stop strings (at most 4). The router also enforces them on the text it detokenizes, so a backend may
    /// ignore them; a backend that honours them finishes with ``GenerationFinishReason/stopString``.
    public var stop: [String]
    /// Whether each token event must carry its log-probability.
    public var logprobs: Bool
    /// How many alternatives (0...20) each token event must carry in `topLogprobs`.
    public var topLogprobs: Int

    public init(
        id: String, promptTokens: [Int32], maxTokens: Int, sampling: SamplingParameters = SamplingParameters(),
        stop: [String] = [], logprobs: Bool = false, topLogprobs: Int = 0
    ) {
        self.id = id
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
        self.logprobs = logprobs
        self.topLogprobs = topLogprobs
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
public struct GeneratedToken: Sendable, Equatable {
    public var id: Int32
    /// Present when the request asked for logprobs.
    public var logprob: Float?
    /// Most likely alternatives, best first; `topLogprobs` of them when requested, else empty.
    public var topLogprobs: [TokenLogprob]

    public init(id: Int32, logprob: Float? = nil, topLogprobs: [TokenLogprob] = []) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

/// Why generation ended.
public enum GenerationFinishReason: String, Sendable, Equatable {
    /// The model produced an end-of-generation token.
    case endOfGeneration
    /// A stop string matched.
    case stopString
    /// `maxTokens` were generated.
    case maxTokens
    /// The context window is full.
    case contextFull

    /// OpenAI's `finish_reason` value.
    public var openAIValue: String {
        switch self {
        case .endOfGeneration, .stopString: "stop"
        case .maxTokens, .contextFull: "length"
        }
    }
}

/// The end of a generation, with token counts for `usage`.
public struct GenerationSummary: Sendable, Equatable {
    public var reason: GenerationFinishReason
    public var promptTokens: Int
    /// Tokens generated, the end-of-generation token included if one was produced.
    public var completionTokens: Int

    public init(reason: GenerationFinishReason, promptTokens: Int, completionTokens: Int) {
        self.reason = reason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

/// What a backend's stream yields.
public enum GenerationEvent: Sendable, Equatable {
    case token(GeneratedToken)
    /// Always the last event.
    case finished(GenerationSummary)
}
