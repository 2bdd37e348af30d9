/// The state of the sampler's random generator (xoshiro256**) after some number of draws: the four words of
/// its state, exactly. A generation continued from it draws the numbers an undisturbed one would have.
public struct RandomState: Sendable, Hashable {
    public var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(_ s0: UInt64, _ s1: UInt64, _ s2: UInt64, _ s3: UInt64) {
        (self.s0, self.s1, self.s2, self.s3) = (s0, s1, s2, s3)
    }

    /// The generator is never all zeros (splitmix64 seeding cannot produce it, and it is a fixed point).
    public var isValid: Bool { s0 | s1 | s2 | s3 != 0 }
}

/// Which arithmetic computed a prompt's KV. The prefill path (f32 sgemm) and decode steps (quantized kernels) round
/// differently, so a generation continued elsewhere must rebuild its prompt on the path its first run used.
public enum PromptPath: String, Sendable, Hashable {
    /// The prefill path: a prefill worker, or a decode worker's prefill engine.
    case prefill
    /// Decode steps on a decode worker.
    case decode
}

/// A generation in flight, everything needed to continue it anywhere: the request, the tokens generated so far
/// and the sampler's random-generator state after the last of them. The rest of the sampler's state is a function
/// of these (its penalty history is the last tokens of prompt + generated), as is the stop-string matching state
/// of whoever renders the text (a function of the generated ids).
///
/// A worker that continues a state rebuilds the KV of prompt + generated (the prompt on the prefill path, the
/// generated tokens through decode steps, as an undisturbed run computed them) and samples on: the tokens are
/// the ones the undisturbed run would have produced, for greedy and seeded sampling alike.
public struct GenerationState: Sendable, Equatable {
    public var request: GenerationRequest
    /// Tokens emitted so far, in order (end-of-generation and stop tokens are never emitted: they end it).
    public var generated: [Int32]
    /// The generator's state after drawing the last of `generated`; nil before the first draw (then it starts
    /// from `request.sampling.seed`). Greedy sampling draws nothing, so it stays nil.
    public var random: RandomState?
    /// How the prompt's KV was computed; nil until a worker computed it (a continuation may then choose).
    public var promptPath: PromptPath?

    public init(
        request: GenerationRequest, generated: [Int32] = [], random: RandomState? = nil, promptPath: PromptPath? = nil
    ) {
        self.request = request
        self.generated = generated
        self.random = random
        self.promptPath = promptPath
    }

    /// Records one emitted token.
    public mutating func append(_ token: GeneratedToken) {
        generated.append(token.id)
        if let random = token.random { self.random = random }
    }

    /// Tokens still allowed (`maxNewTokens` minus those generated).
    public var remainingTokens: Int { request.maxNewTokens - generated.count }

    /// `request.validated(...)`, and the generated part checked against it.
    public func validated(vocabularySize: Int, contextLength: Int) throws(GenerationError) -> Self {
        _ = try request.validated(vocabularySize: vocabularySize, contextLength: contextLength)
        guard generated.count < request.maxNewTokens else {
            throw GenerationError(
                .invalidArgument,
                "the state has \(generated.count) generated tokens of at most \(request.maxNewTokens): nothing is left to generate",
                param: "generated")
        }
        for token in generated { try GenerationRequest.checkToken("generated token", token, vocabularySize) }
        if let random, !random.isValid {
            throw GenerationError(.invalidArgument, "the random-generator state is all zeros", param: "random")
        }
        return self
    }
}
