import Generation

/// The validated settings shared by chat completions and completions: every out-of-range value is rejected
/// here with a ``RouterError`` naming the parameter — the one validation of a request's settings before it
/// reaches a backend.
struct GenerationOptions: Sendable, Equatable {
    /// What the client asked for (`max_completion_tokens`, else `max_tokens`); nil means the configured default.
    var requestedMaxTokens: Int?
    /// With a seed: the client's, or one drawn here, so that the generation can be continued anywhere.
    var sampling: SamplingParameters
    var stop: [String]
    var stream: Bool
    var includeUsage: Bool

    static let maxStopStrings = 4
    static let maxTopLogprobs = SamplingParameters.maximumLogprobs

    /// Validates the fields common to both generation endpoints against the served model and vocabulary.
    static func validate(
        _ fields: CommonGenerationFields, modelID: String, vocabularySize: Int
    ) throws(RouterError) -> GenerationOptions {
        guard let model = fields.model else {
            throw RouterError(.missingParameter, "you must provide a model parameter", param: "model")
        }
        guard model == modelID else {
            throw RouterError(
                .modelNotFound, "The model `\(model)` does not exist; this server serves `\(modelID)`.",
                param: "model")
        }
        if let n = fields.n, n != 1 {
            throw RouterError(
                .invalidParameter, "n must be 1: this server generates exactly one choice per request, got \(n)",
                param: "n")
        }
        for (key, value) in [("max_tokens", fields.maxTokens), ("max_completion_tokens", fields.maxCompletionTokens)] {
            if let value, value < 1 {
                throw RouterError(.invalidParameter, "\(key) must be at least 1, got \(value)", param: key)
            }
        }
        var logitBias: [Int32: Float] = [:]
        for (key, bias) in fields.logitBias ?? [:] {
            guard let id = Int32(key), id >= 0, Int(id) < vocabularySize else {
                throw RouterError(
                    .invalidParameter,
                    "logit_bias key '\(key)' is not a token id of this model (0..<\(vocabularySize))",
                    param: "logit_bias")
            }
            logitBias[id] = Float(bias)
        }
        var system = SystemRandomNumberGenerator()
        let sampling: SamplingParameters
        do {
            sampling = try SamplingParameters(
                temperature: Float(fields.temperature ?? 1), topK: fields.topK ?? 0, topP: Float(fields.topP ?? 1),
                minP: Float(fields.minP ?? 0), repetitionPenalty: Float(fields.repetitionPenalty ?? 1),
                frequencyPenalty: Float(fields.frequencyPenalty ?? 0), presencePenalty: Float(fields.presencePenalty ?? 0),
                logitBias: logitBias, seed: fields.seed.map { UInt64(bitPattern: $0) } ?? system.next()
            ).validated(vocabularySize: vocabularySize)
        } catch {
            throw RouterError(error)
        }

        let stop = fields.stop?.values ?? []
        guard stop.count <= maxStopStrings else {
            throw RouterError(
                .invalidParameter, "stop may hold at most \(maxStopStrings) strings, got \(stop.count)", param: "stop")
        }
        guard !stop.contains(where: \.isEmpty) else {
            throw RouterError(.invalidParameter, "stop strings must not be empty", param: "stop")
        }

        let stream = fields.stream ?? false
        if fields.streamOptions != nil && !stream {
            throw RouterError(
                .invalidParameter, "stream_options is only allowed when stream is true", param: "stream_options")
        }

        return GenerationOptions(
            requestedMaxTokens: fields.maxCompletionTokens ?? fields.maxTokens, sampling: sampling, stop: stop,
            stream: stream, includeUsage: fields.streamOptions?.includeUsage ?? false)
    }

    /// The state a backend starts from. Without `max_tokens` the completion may run to the configured default or
    /// the end of the context, whichever is less; a `max_tokens` that cannot fit beside the prompt is a 400
    /// naming the limit (as OpenAI and vLLM answer), never silently clamped. `promptParameter` names the prompt in
    /// errors (`messages` or `prompt`).
    func state(
        id: String, prompt: [Int32], promptParameter: String, logprobs: Int?, contextLength: Int, defaultMaxTokens: Int,
        vocabularySize: Int
    ) throws(RouterError) -> GenerationState {
        var sampling = self.sampling
        sampling.logprobs = logprobs
        let maxTokens = requestedMaxTokens ?? max(1, min(defaultMaxTokens, contextLength - prompt.count))
        do {
            return GenerationState(
                request: try GenerationRequest(id: id, prompt: prompt, maxNewTokens: maxTokens, sampling: sampling)
                    .validated(vocabularySize: vocabularySize, contextLength: contextLength))
        } catch {
            throw RouterError(error, promptParameter: promptParameter)
        }
    }
}
