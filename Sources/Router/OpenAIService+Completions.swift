import Foundation
import Generation
import Hummingbird

/// `POST /v1/completions` (the legacy text completion API).
extension OpenAIService {
    func completions(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(CompletionRequest.self, from: request, limit: configuration.maxBodyBytes)
        let options = try GenerationOptions.validate(
            body.common, modelID: configuration.modelID, vocabularySize: tokenizer.vocabularySize)
        if let bestOf = body.bestOf, bestOf != 1 {
            throw RouterError(
                .invalidParameter, "best_of must be 1: this server generates exactly one choice per request, got \(bestOf)",
                param: "best_of")
        }
        if let suffix = body.suffix, !suffix.isEmpty {
            throw RouterError(.invalidParameter, "suffix is not supported by this model", param: "suffix")
        }
        let topLogprobs = body.logprobs
        if let topLogprobs, !(0...GenerationOptions.maxTopLogprobs).contains(topLogprobs) {
            throw RouterError(
                .invalidParameter, "logprobs must be in 0...\(GenerationOptions.maxTopLogprobs), got \(topLogprobs)",
                param: "logprobs")
        }
        let echo = body.echo ?? false
        if echo && topLogprobs != nil {
            throw RouterError(
                .invalidParameter, "echo together with logprobs is not supported: prompt logprobs are not computed",
                param: "echo")
        }

        let promptTokens: [Int32]
        let promptText: String
        switch body.prompt {
        case nil:
            throw RouterError(.missingParameter, "Missing required parameter: 'prompt'.", param: "prompt")
        case .text(let text):
            promptTokens = tokenizePrompt(text)
            promptText = text
        case .tokens(let tokens):
            do {
                try tokenizer.validate(tokens)
            } catch {
                throw RouterError(.invalidParameter, "prompt: \(error.message)", param: "prompt", cause: error)
            }
            promptTokens = tokens
            promptText = tokenizer.decode(tokens)
        }
        guard !promptTokens.isEmpty else {
            throw RouterError(.invalidParameter, "prompt must not be empty", param: "prompt")
        }
        let id = Self.makeID(prefix: "cmpl-")
        let state = try options.state(
            id: id, prompt: promptTokens, promptParameter: "prompt", logprobs: topLogprobs,
            contextLength: configuration.contextLength, defaultMaxTokens: configuration.defaultMaxTokens,
            vocabularySize: tokenizer.vocabularySize)
        let (stream, tracker) = try await start(state, promptParameter: "prompt")
        let created = Self.now
        var collector = CompletionCollector(
            transcript: GenerationTranscript(tokenizer: tokenizer, stop: options.stop, logprobs: topLogprobs != nil),
            promptTokens: promptTokens.count, echo: echo ? promptText : "", wantsLogprobs: topLogprobs != nil)
        let model = configuration.modelID

        if options.stream {
            let deadline = self.deadline
            let includeUsage = options.includeUsage
            let logger = self.logger
            let responseBody = ResponseBody { [initial = collector] writer in
                let encoder = JSONBody.makeEncoder()
                func chunk(_ text: String, logprobs: CompletionLogprobs?, finishReason: String?) -> ByteBuffer {
                    JSONBody.event(
                        CompletionResponse(
                            id: id, created: created, model: model,
                            choices: [.init(text: text, logprobs: logprobs, finishReason: finishReason)],
                            usage: nil, includeUsageField: includeUsage),
                        encoder: encoder)
                }
                var collector = initial
                defer { tracker.finish(promptTokens: nil, completionTokens: nil) }
                do {
                    if echo { try await writer.write(chunk(promptText, logprobs: nil, finishReason: nil)) }
                    try await GenerationPump.run(stream, deadline: deadline) { event in
                        tracker.observe(event)
                        let added = collector.accept(event)
                        if !added.text.isEmpty || added.logprobs != nil {
                            try await writer.write(chunk(added.text, logprobs: added.logprobs, finishReason: nil))
                        }
                        return added.decision
                    }
                } catch {
                    logger.warning("completion failed mid-stream", metadata: ["id": "\(id)", "error": "\(error)"])
                    try await writer.write(JSONBody.event(OpenAIErrorBody(RouterError.wrapping(error))))
                    try await writer.write(JSONBody.doneEvent)
                    try await writer.finish(nil)
                    return
                }
                let usage = collector.usage
                tracker.finish(promptTokens: usage.promptTokens, completionTokens: usage.completionTokens)
                try await writer.write(chunk("", logprobs: nil, finishReason: collector.finishReason))
                if includeUsage {
                    try await writer.write(JSONBody.event(CompletionResponse(
                        id: id, created: created, model: model, choices: [], usage: usage, includeUsageField: true), encoder: encoder))
                }
                try await writer.write(JSONBody.doneEvent)
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: Self.eventStreamHeaders, body: responseBody)
        }

        do {
            try await GenerationPump.run(stream, deadline: deadline) { event in
                tracker.observe(event)
                return collector.accept(event).decision
            }
        } catch {
            tracker.finish(promptTokens: nil, completionTokens: nil)
            throw error
        }
        let usage = collector.usage
        tracker.finish(promptTokens: usage.promptTokens, completionTokens: usage.completionTokens)
        return JSONBody.response(CompletionResponse(
            id: id, created: created, model: model,
            choices: [.init(text: collector.text, logprobs: collector.logprobs, finishReason: collector.finishReason)],
            usage: usage, includeUsageField: true))
    }
}

/// Accumulates a text completion (with the echoed prompt, if asked) and its legacy logprobs.
struct CompletionCollector: Sendable {
    private var transcript: GenerationTranscript
    let promptTokens: Int
    private let wantsLogprobs: Bool
    private(set) var text: String
    private var logprobsSoFar = CompletionLogprobs()
    private(set) var finishReason = "stop"
    private var completionTokens: Int?
    /// Characters of `text` so far, for `text_offset`.
    private var offset: Int

    init(transcript: GenerationTranscript, promptTokens: Int, echo: String, wantsLogprobs: Bool) {
        self.transcript = transcript
        self.promptTokens = promptTokens
        self.wantsLogprobs = wantsLogprobs
        self.text = echo
        self.offset = echo.count
    }

    var usage: Usage { Usage(promptTokens: promptTokens, completionTokens: completionTokens ?? transcript.tokenCount) }
    var logprobs: CompletionLogprobs? { wantsLogprobs ? logprobsSoFar : nil }

    struct Added {
        var decision: GenerationPump.Decision
        var text: String
        var logprobs: CompletionLogprobs?
    }

    mutating func accept(_ event: GenerationEvent) -> Added {
        let step: GenerationTranscript.Step
        switch event {
        case .token(let token):
            step = transcript.accept(token)
        case .finished(let summary):
            step = transcript.finish()
            finishReason = step.stopped ? "stop" : summary.reason.openAIValue
            completionTokens = step.stopped ? transcript.tokenCount : summary.completionTokens
        }
        var added: CompletionLogprobs?
        if let entry = step.logprob {
            var top: [String: Float] = [:]
            for alternative in entry.top where top[alternative.token] == nil { top[alternative.token] = alternative.logprob }
            let one = CompletionLogprobs(
                tokens: [entry.token], tokenLogprobs: [entry.logprob], topLogprobs: [top], textOffset: [offset])
            logprobsSoFar.tokens += one.tokens
            logprobsSoFar.tokenLogprobs += one.tokenLogprobs
            logprobsSoFar.topLogprobs += one.topLogprobs
            logprobsSoFar.textOffset += one.textOffset
            added = one
        }
        text += step.text
        offset += step.text.count
        if step.stopped, case .token = event {
            finishReason = "stop"
            completionTokens = transcript.tokenCount
            return Added(decision: .stop, text: step.text, logprobs: added)
        }
        return Added(decision: .proceed, text: step.text, logprobs: added)
    }
}
