/// How to pick each token. Defaults follow the OpenAI API: temperature 1, no truncation, no penalties.
/// Validate anything that came from outside with `validated(vocabularySize:)`, once, at the edge (the router, an
/// RPC handler, the CLI); everything past the edge trusts it.
public struct SamplingParameters: Sendable, Equatable {
    /// Softmax temperature in 0...2; 0 means greedy (argmax, ties to the lowest token id).
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 = off.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches topP, in (0, 1]; 1 = off.
    public var topP: Float
    /// Drop tokens less likely than minP × the most likely token's probability, in 0...1; 0 = off.
    public var minP: Float
    /// llama.cpp repeat penalty: positive logits of recent tokens are divided by it, negative ones multiplied;
    /// 1 = off, must be > 0.
    public var repetitionPenalty: Float
    /// Subtracted once per occurrence of a token in the recent window, in -2...2 (OpenAI).
    public var frequencyPenalty: Float
    /// Subtracted once from every token present in the recent window, in -2...2 (OpenAI).
    public var presencePenalty: Float
    /// How many of the most recent tokens (prompt included) the penalties look at; 0 = off, -1 = all tokens.
    public var penaltyLastN: Int
    /// Added to the logit of the token before anything else, each value in -100...100 (OpenAI).
    public var logitBias: [Int32: Float]
    /// Seed of the sampler's generator. A generation in flight always has one (the edge draws it when the client
    /// gave none), so that its state can be carried to another worker and reproduced.
    public var seed: UInt64?
    /// Log-probabilities to report: nil = none, 0 = the chosen token's only, N = also the top N (N ≤ 20).
    public var logprobs: Int?

    /// Greedy decoding with no penalties (what correctness comparisons with llama.cpp use).
    public static let greedy = SamplingParameters(temperature: 0, seed: 0)

    /// The most log-probabilities (`logprobs`) a request may ask for.
    public static let maximumLogprobs = 20

    public init(
        temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        frequencyPenalty: Float = 0, presencePenalty: Float = 0, penaltyLastN: Int = 64,
        logitBias: [Int32: Float] = [:], seed: UInt64? = nil, logprobs: Int? = nil
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.penaltyLastN = penaltyLastN
        self.logitBias = logitBias
        self.seed = seed
        self.logprobs = logprobs
    }

    /// Returns `self` if every parameter is in range, else throws `.invalidArgument` naming the parameter (with
    /// OpenAI's spelling), its allowed range and the value given. With `vocabularySize`, token ids in `logitBias`
    /// are checked too.
    public func validated(vocabularySize: Int? = nil) throws(GenerationError) -> Self {
        try Self.check("temperature", temperature, "in 0...2", temperature >= 0 && temperature <= 2)
        try Self.check("top_p", topP, "in (0, 1]", topP > 0 && topP <= 1)
        guard topK >= 0 else { throw Self.outOfRange("top_k", "\(topK)", ">= 0") }
        try Self.check("min_p", minP, "in 0...1", minP >= 0 && minP <= 1)
        try Self.check("repetition_penalty", repetitionPenalty, "> 0", repetitionPenalty > 0 && repetitionPenalty.isFinite)
        try Self.check("frequency_penalty", frequencyPenalty, "in -2...2", frequencyPenalty >= -2 && frequencyPenalty <= 2)
        try Self.check("presence_penalty", presencePenalty, "in -2...2", presencePenalty >= -2 && presencePenalty <= 2)
        guard penaltyLastN >= -1 else {
            throw Self.outOfRange("penalty_last_n", "\(penaltyLastN)", ">= -1 (-1 = all tokens, 0 = off)")
        }
        for (token, bias) in logitBias.sorted(by: { $0.key < $1.key }) {
            try Self.check("logit_bias", bias, "in -100...100 (token \(token))", bias >= -100 && bias <= 100)
            try GenerationRequest.checkToken("logit_bias", token, vocabularySize)
        }
        if let logprobs, !(0...Self.maximumLogprobs).contains(logprobs) {
            throw Self.outOfRange("top_logprobs", "\(logprobs)", "in 0...\(Self.maximumLogprobs)")
        }
        return self
    }

    private static func check(_ name: String, _ value: Float, _ range: String, _ ok: Bool) throws(GenerationError) {
        // NaN fails every comparison above, so it lands here too.
        guard ok else { throw outOfRange(name, "\(value)", range) }
    }

    static func outOfRange(_ name: String, _ value: String, _ range: String) -> GenerationError {
        GenerationError(.invalidArgument, "\(name) must be \(range), got \(value)", param: name)
    }
}
