import ClusterProtocol
import Inference
import KVTransport

extension SamplingParameters {
    /// The parameters `message` describes, validated (`.invalidArgument` naming the parameter otherwise).
    ///
    /// proto3 cannot tell "unset" from zero, so zero means the neutral value where zero is not a legal one:
    /// `top_p` 0 is 1 (off) and `repetition_penalty` 0 is 1 (off). `logprobs` false ignores `top_logprobs`.
    /// Penalties look at the last 64 tokens, as in `SamplingParameters()`.
    public init(proto message: Baton_V1_SamplingParameters, vocabularySize: Int) throws(WorkerError) {
        guard message.topLogprobs <= UInt32(SamplingParameters.maximumLogprobs) else {
            throw WorkerError(
                .invalidArgument,
                "sampling parameter top_logprobs must be in 0...\(SamplingParameters.maximumLogprobs), got \(message.topLogprobs)")
        }
        guard message.topK <= UInt32(Int32.max) else {
            throw WorkerError(.invalidArgument, "sampling parameter top_k must be at most \(Int32.max), got \(message.topK)")
        }
        self.init(
            temperature: message.temperature, topK: Int(message.topK), topP: message.topP == 0 ? 1 : message.topP,
            minP: message.minP, repetitionPenalty: message.repetitionPenalty == 0 ? 1 : message.repetitionPenalty,
            frequencyPenalty: message.frequencyPenalty, presencePenalty: message.presencePenalty,
            logitBias: message.logitBias, seed: message.hasSeed_p ? message.seed : nil,
            logprobs: message.logprobs ? Int(message.topLogprobs) : nil)
        do { _ = try validated(vocabularySize: vocabularySize) } catch {
            throw WorkerError(.invalidArgument, error.message, cause: error)
        }
    }

    /// The wire form of the parameters a worker uses (`maxTokens`, stop tokens and stop strings are not part
    /// of it: the decode request carries the length, the router handles stops).
    public var proto: Baton_V1_SamplingParameters {
        var message = Baton_V1_SamplingParameters()
        message.temperature = temperature
        message.topP = topP
        message.topK = UInt32(clamping: topK)
        message.minP = minP
        message.hasSeed_p = seed != nil
        message.seed = seed ?? 0
        message.presencePenalty = presencePenalty
        message.frequencyPenalty = frequencyPenalty
        message.repetitionPenalty = repetitionPenalty
        message.logitBias = logitBias
        message.logprobs = logprobs != nil
        message.topLogprobs = UInt32(clamping: logprobs ?? 0)
        return message
    }
}

extension KVTransportKind {
    /// The wire enum of a transport kind.
    public var workerProto: Baton_V1_TransportKind {
        switch self {
        case .rdma: .rdma
        case .sharedMemory: .sharedMemory
        case .tlsHTTP2: .tlsHTTP2
        case .plaintextHTTP2: .plaintextHTTP2
        }
    }
}
