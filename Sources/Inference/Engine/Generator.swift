import Tokenization

/// Why a generation ended (OpenAI's `finish_reason`: `.endOfGeneration`, `.stopToken` and `.stopString` are "stop").
public enum FinishReason: Sendable, Equatable {
    /// The model produced an end-of-generation token (not part of the text).
    case endOfGeneration
    /// A token listed in `stopTokenIDs` (not part of the text).
    case stopToken(Int32)
    /// A stop string appeared in the text; the text ends just before it.
    case stopString(String)
    /// `maxTokens` were generated, or the context is full.
    case length

    /// `"stop"` or `"length"`.
    public var openAIName: String { self == .length ? "length" : "stop" }
}

/// Prompt and completion token counts.
public struct TokenUsage: Sendable, Equatable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int { promptTokens + completionTokens }
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

/// The outcome of one `Generator.generate` call.
public struct GenerationResult: Sendable {
    /// The text emitted (stop strings and end-of-generation tokens excluded).
    public var text: String
    /// Every sampled token that became part of the completion, in order.
    public var tokens: [Int32]
    public var finishReason: FinishReason
    public var usage: TokenUsage
    /// One entry per token in `tokens` when `SamplingParameters.logprobs` was set, else empty.
    public var logprobs: [SampledToken]
    /// The seed the sampler used (reproduces the run when the request gave none).
    public var seed: UInt64
}

/// Single-sequence generation: prefill the prompt, then sample and decode one token at a time until an
/// end-of-generation token, a stop token or string, `maxTokens`, or the end of the context.
///
/// Runs on the calling thread; one generation at a time (it owns the engines while running). With a prefill engine
/// the prompt takes the sgemm path; without one it is ingested by the decode engine. Both engines must share the
/// cache.
public final class Generator: @unchecked Sendable {
    public let tokenizer: Tokenizer
    public let prefillEngine: PrefillEngine?
    public let decodeEngine: DecodeEngine

    public init(tokenizer: Tokenizer, prefill: PrefillEngine?, decode: DecodeEngine) throws(InferenceError) {
        if let prefill {
            guard prefill.cache === decode.cache else {
                throw InferenceError(.invalidArgument, "the prefill and decode engines must share one KV cache")
            }
        }
        self.tokenizer = tokenizer
        self.prefillEngine = prefill
        self.decodeEngine = decode
    }

    /// Generates a completion of `prompt` (token ids, special tokens included as wanted).
    ///
    /// `onText` receives the text as it becomes final (complete UTF-8, never part of a stop string); the
    /// concatenation of its arguments equals `result.text`. The sequence's KV is freed before returning.
    public func generate(
        prompt: [Int32], parameters: SamplingParameters, onText: (String) -> Void = { _ in }
    ) throws(InferenceError) -> GenerationResult {
        let vocabulary = decodeEngine.model.configuration.vocabularySize
        let parameters = try parameters.validated(vocabularySize: vocabulary)
        let cache = decodeEngine.cache
        let context = min(decodeEngine.maxContext, prefillEngine?.maxContext ?? Int.max)
        guard prompt.count < context else {
            throw InferenceError(.contextOverflow, "the prompt has \(prompt.count) tokens; the context holds \(context)")
        }
        let sequence = cache.createSequence()
        defer { cache.free(sequence) }
        var logits: [Float]
        if let prefillEngine {
            logits = try prefillEngine.prefill(prompt, sequence: sequence)
        } else {
            logits = try decodeEngine.ingest(prompt, sequence: sequence)
        }

        var sampler = Sampler(parameters: parameters, vocabularySize: vocabulary)
        // Penalties see the prompt too, as in llama.cpp's server (the sampler keeps only its last-N window).
        sampler.accept(contentsOf: prompt)
        var progress = CompletionProgress(
            tokenizer: tokenizer, parameters: parameters,
            maxTokens: min(parameters.maxTokens ?? Int.max, context - prompt.count))
        var logprobs: [SampledToken] = []
        func emit(_ piece: String) { if !piece.isEmpty { onText(piece) } }

        var first = true
        while !progress.isFinished {
            let sampled: SampledToken
            if first {
                sampled = sampler.sample(logits: &logits)
                first = false
            } else {
                sampled = decodeEngine.withLogits(row: 0) { sampler.sample(logits: $0) }
            }
            let accepted = progress.tokens.count
            emit(progress.accept(sampled.id))
            if parameters.logprobs != nil && progress.tokens.count > accepted { logprobs.append(sampled) }
            if progress.isFinished { break }
            try decodeEngine.step([DecodeInput(sequence: sequence, token: sampled.id)])
        }
        emit(progress.finish())
        let text = progress.text, tokens = progress.tokens, finish = progress.finishReason ?? .length
        return GenerationResult(
            text: text, tokens: tokens, finishReason: finish,
            usage: TokenUsage(promptTokens: prompt.count, completionTokens: tokens.count),
            logprobs: logprobs, seed: sampler.seed)
    }
}
