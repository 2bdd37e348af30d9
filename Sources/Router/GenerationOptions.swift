import Tokenization

/// The validated settings shared by chat completions and completions: every out-of-range value is rejected
/// here with a ``RouterError`` naming the parameter, so nothing downstream re-checks.
struct GenerationOptions: Sendable, Equatable {
    /// What the client asked for (`max_completion_tokens`, else `max_tokens`); nil means the configured default.
    var requestedMaxTokens: Int?
    var sampling: SamplingParameters
    var stop: [String]
    var stream: Bool
    var includeUsage: Bool

    static let maxStopStrings = 4
    static let maxTopLogprobs = 20

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
        try check(fields.temperature, in: 0...2, name: "temperature")
        try check(fields.topP, in: 0...1, name: "top_p")
        try check(fields.presencePenalty, in: -2...2, name: "presence_penalty")
        try check(fields.frequencyPenalty, in: -2...2, name: "frequency_penalty")

        var logitBias: [Int32: Float] = [:]
        for (key, bias) in fields.logitBias ?? [:] {
            guard let id = Int32(key), id >= 0, Int(id) < vocabularySize else {
                throw RouterError(
                    .invalidParameter,
                    "logit_bias key '\(key)' is not a token id of this model (0..<\(vocabularySize))",
                    param: "logit_bias")
            }
            guard (-100...100).contains(bias) else {
                throw RouterError(
                    .invalidParameter, "logit_bias value for token \(key) must be in -100...100, got \(bias)",
                    param: "logit_bias")
            }
            logitBias[id] = Float(bias)
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
            requestedMaxTokens: fields.maxCompletionTokens ?? fields.maxTokens,
            sampling: SamplingParameters(
                temperature: Float(fields.temperature ?? 1),
                topP: Float(fields.topP ?? 1),
                seed: fields.seed.map { UInt64(bitPattern: $0) },
                presencePenalty: Float(fields.presencePenalty ?? 0),
                frequencyPenalty: Float(fields.frequencyPenalty ?? 0),
                logitBias: logitBias),
            stop: stop,
            stream: stream,
            includeUsage: fields.streamOptions?.includeUsage ?? false)
    }

    /// Checks the prompt fits and returns how many tokens may be generated: the requested (or default) count,
    /// clamped so prompt plus output fit the context (the finish reason is then `length`).
    func maxTokens(promptTokens: Int, contextLength: Int, defaultMaxTokens: Int) throws(RouterError) -> Int {
        guard promptTokens < contextLength else {
            throw RouterError(
                .contextLengthExceeded,
                "This model's maximum context length is \(contextLength) tokens. However, your prompt resulted in "
                    + "\(promptTokens) tokens, which leaves no room for a completion. Please reduce the length "
                    + "of the prompt.",
                param: "messages")
        }
        return min(requestedMaxTokens ?? defaultMaxTokens, contextLength - promptTokens)
    }

    private static func check(_ value: Double?, in range: ClosedRange<Double>, name: String) throws(RouterError) {
        guard let value else { return }
        guard range.contains(value) else {
            throw RouterError(
                .invalidParameter,
                "\(name) must be in \(range.lowerBound.rangeText)...\(range.upperBound.rangeText), got \(value.rangeText)",
                param: name)
        }
    }
}

extension Double {
    /// `2` rather than `2.0`, as people write parameter ranges.
    fileprivate var rangeText: String {
        self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self)
    }
}
