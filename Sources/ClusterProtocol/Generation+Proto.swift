import Generation

// Conversions between the generation contract's values and their wire messages. Decoding never judges values
// (ranges, vocabulary, context): the receiving RPC handler validates the decoded value once, as every edge does.

extension SamplingParameters {
    public init(proto message: Baton_V1_SamplingParameters) {
        self.init(
            temperature: message.temperature, topK: Int(message.topK), topP: message.hasTopP ? message.topP : 1,
            minP: message.minP, repetitionPenalty: message.hasRepetitionPenalty ? message.repetitionPenalty : 1,
            frequencyPenalty: message.frequencyPenalty, presencePenalty: message.presencePenalty,
            penaltyLastN: message.hasPenaltyLastN ? Int(message.penaltyLastN) : 64, logitBias: message.logitBias,
            seed: message.hasSeed ? message.seed : nil, logprobs: message.hasLogprobs ? Int(message.logprobs) : nil)
    }

    public var proto: Baton_V1_SamplingParameters {
        var message = Baton_V1_SamplingParameters()
        message.temperature = temperature
        if topP != 1 { message.topP = topP }
        message.topK = UInt32(clamping: topK)
        message.minP = minP
        if let seed { message.seed = seed }
        message.presencePenalty = presencePenalty
        message.frequencyPenalty = frequencyPenalty
        if repetitionPenalty != 1 { message.repetitionPenalty = repetitionPenalty }
        message.logitBias = logitBias
        if let logprobs { message.logprobs = UInt32(clamping: logprobs) }
        if penaltyLastN != 64 { message.penaltyLastN = Int32(clamping: penaltyLastN) }
        return message
    }
}

extension RandomState {
    public init(proto message: Baton_V1_RandomState) {
        self.init(message.s0, message.s1, message.s2, message.s3)
    }

    public var proto: Baton_V1_RandomState {
        var message = Baton_V1_RandomState()
        (message.s0, message.s1, message.s2, message.s3) = (s0, s1, s2, s3)
        return message
    }
}

extension GenerationState {
    public init(proto message: Baton_V1_GenerationState) {
        self.init(
            request: GenerationRequest(
                id: message.requestID, prompt: message.promptTokens, maxNewTokens: Int(message.maxNewTokens),
                sampling: SamplingParameters(proto: message.sampling), stopTokenIDs: Set(message.stopTokenIds)),
            generated: message.generatedTokens, random: message.hasRandom ? RandomState(proto: message.random) : nil,
            promptPath: PromptPath(proto: message.promptPath))
    }

    public var proto: Baton_V1_GenerationState {
        var message = Baton_V1_GenerationState()
        message.requestID = request.id
        message.promptTokens = request.prompt
        message.maxNewTokens = UInt32(clamping: request.maxNewTokens)
        message.sampling = request.sampling.proto
        message.stopTokenIds = request.stopTokenIDs.sorted()
        message.generatedTokens = generated
        if let random { message.random = random.proto }
        message.promptPath = promptPath.proto
        return message
    }
}

extension PromptPath {
    /// Nil for an unspecified (or unknown) path: the receiving worker chooses.
    public init?(proto path: Baton_V1_PromptPath) {
        switch path {
        case .prefill: self = .prefill
        case .decode: self = .decode
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }
}

extension Optional where Wrapped == PromptPath {
    public var proto: Baton_V1_PromptPath {
        switch self {
        case .prefill: .prefill
        case .decode: .decode
        case nil: .unspecified
        }
    }
}

extension GeneratedToken {
    public init(proto message: Baton_V1_DecodeToken) {
        self.init(
            id: message.token, logprob: message.hasLogprob ? message.logprob : nil,
            topLogprobs: message.topLogprobs.map { TokenLogprob(id: $0.token, logprob: $0.logprob) },
            random: message.hasRandom ? RandomState(proto: message.random) : nil)
    }

    public var proto: Baton_V1_DecodeToken {
        var message = Baton_V1_DecodeToken()
        message.token = id
        if let logprob { message.logprob = logprob }
        message.topLogprobs = topLogprobs.map { alternative in
            var entry = Baton_V1_TokenLogprob()
            entry.token = alternative.id
            entry.logprob = alternative.logprob
            return entry
        }
        if let random { message.random = random.proto }
        return message
    }
}

extension FinishReason {
    /// The reason a decode worker sent; an unknown or unset one is a protocol error, never a guess.
    public init(proto reason: Baton_V1_DecodeFinished.Reason) throws(GenerationError) {
        switch reason {
        case .endOfGeneration: self = .endOfGeneration
        case .maxTokens: self = .maxTokens
        case .contextFull: self = .contextFull
        case .stopToken: self = .stopToken
        case .unspecified, .UNRECOGNIZED:
            throw GenerationError(.failed, "the decode worker finished with an unknown reason (\(reason.rawValue))")
        }
    }

    /// The wire value; `.stopString` has none (stop strings are matched where text is rendered, never on a worker).
    public var proto: Baton_V1_DecodeFinished.Reason {
        switch self {
        case .endOfGeneration: .endOfGeneration
        case .maxTokens: .maxTokens
        case .contextFull: .contextFull
        case .stopToken: .stopToken
        case .stopString: .unspecified
        }
    }
}

extension Baton_V1_TransportKind {
    /// The transport's one name, as metrics, cluster status, logs and docs spell it.
    public var name: String {
        switch self {
        case .tlsHTTP2: "tls-h2"
        case .plaintextHTTP2: "plaintext-h2"
        case .sharedMemory: "shared-memory"
        case .rdma: "rdma"
        case .unspecified, .UNRECOGNIZED: "none"
        }
    }

    /// The transport `name` names (`.unspecified` for any other name).
    public init(name: String) {
        self = [Self.tlsHTTP2, .plaintextHTTP2, .sharedMemory, .rdma].first { $0.name == name } ?? .unspecified
    }
}
