/// How to pick tokens and when to stop, per request. Defaults follow the OpenAI API: temperature 1, no
/// truncation, no penalties. Call `validated()` on anything that came from outside.
public struct SamplingParameters: Sendable, Equatable, Codable {
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
    /// How many of the most recent tokens (prompt included, if the engine feeds it) the penalties look at;
    /// 0 = penalties off, -1 = all tokens.
    public var penaltyLastN: Int
    /// Added to the logit of the token before anything else, each value in -100...100 (OpenAI).
    public var logitBias: [Int32: Float]
    /// Seed of the sampler's PRNG; nil = draw one from the system (the sampler reports which).
    public var seed: UInt64?
    /// Most tokens to generate; nil = until a stop condition or the context is full. At least 1.
    public var maxTokens: Int?
    /// Generation ends when one of these tokens is sampled (in addition to the model's end-of-generation tokens).
    public var stopTokenIDs: Set<Int32>
    /// Generation ends when the text contains one of these; the stop string is not emitted. Non-empty strings.
    public var stopStrings: [String]
    /// Log-probabilities to report: nil = none, 0 = the chosen token's only, N = also the top N (N ≤ 20).
    public var logprobs: Int?

    /// Greedy decoding with no penalties (what correctness comparisons with llama.cpp use).
    public static let greedy = SamplingParameters(temperature: 0)

    public init(
        temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        frequencyPenalty: Float = 0, presencePenalty: Float = 0, penaltyLastN: Int = 64,
        logitBias: [Int32: Float] = [:], seed: UInt64? = nil, maxTokens: Int? = nil,
        stopTokenIDs: Set<Int32> = [], stopStrings: [String] = [], logprobs: Int? = nil
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
        self.maxTokens = maxTokens
        self.stopTokenIDs = stopTokenIDs
        self.stopStrings = stopStrings
        self.logprobs = logprobs
    }

    /// The most log-probabilities (`logprobs`) a request may ask for.
    public static let maximumLogprobs = 20

    /// Returns `self` if every parameter is in range, else throws `.invalidArgument` naming the parameter, its
    /// allowed range and the value given. With `vocabularySize`, token ids in `logitBias` and `stopTokenIDs`
    /// are checked too.
    public func validated(vocabularySize: Int? = nil) throws(InferenceError) -> Self {
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
            try Self.check("logit_bias[\(token)]", bias, "in -100...100", bias >= -100 && bias <= 100)
            try Self.checkToken("logit_bias", token, vocabularySize)
        }
        if let maxTokens, maxTokens < 1 {
            throw Self.outOfRange("max_tokens", "\(maxTokens)", ">= 1")
        }
        for token in stopTokenIDs.sorted() {
            try Self.checkToken("stop token id", token, vocabularySize)
        }
        if let index = stopStrings.firstIndex(of: "") {
            throw InferenceError(.invalidArgument, "stop string \(index) is empty; stop strings must be non-empty")
        }
        if let logprobs, !(0...Self.maximumLogprobs).contains(logprobs) {
            throw Self.outOfRange("logprobs", "\(logprobs)", "in 0...\(Self.maximumLogprobs)")
        }
        return self
    }

    private static func check(_ name: String, _ value: Float, _ range: String, _ ok: Bool) throws(InferenceError) {
        // NaN fails every comparison above, so it lands here too.
        guard ok else { throw outOfRange(name, "\(value)", range) }
    }

    private static func checkToken(_ name: String, _ token: Int32, _ vocabularySize: Int?) throws(InferenceError) {
        guard token >= 0 else { throw outOfRange(name, "\(token)", "a token id >= 0") }
        if let vocabularySize, Int(token) >= vocabularySize {
            throw outOfRange(name, "\(token)", "a token id in 0..<\(vocabularySize)")
        }
    }

    private static func outOfRange(_ name: String, _ value: String, _ range: String) -> InferenceError {
        InferenceError(.invalidArgument, "sampling parameter \(name) must be \(range), got \(value)")
    }
}
