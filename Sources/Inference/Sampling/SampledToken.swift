/// One sampled token and, if the parameters asked for them, log-probabilities.
///
/// Log-probabilities are natural logs of the log-softmax of the logits after logit bias and penalties, at
/// temperature 1 and before top-k / top-p / min-p truncation: they describe the model's (biased, penalised)
/// distribution, not the truncated one the token was drawn from.
public struct SampledToken: Sendable {
    /// The chosen token.
    public var id: Int32
    /// Log-probability of `id`; nil when `SamplingParameters.logprobs` is nil.
    public var logprob: Float?
    /// The N most likely tokens with their log-probabilities, most likely first (ties: lower id first); empty
    /// unless `SamplingParameters.logprobs` is N > 0.
    public var topLogprobs: [(Int32, Float)]

    public init(id: Int32, logprob: Float? = nil, topLogprobs: [(Int32, Float)] = []) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}
