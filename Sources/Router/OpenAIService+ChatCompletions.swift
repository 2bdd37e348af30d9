import ChatTemplates
import Foundation
import Generation
import Hummingbird

/// `POST /v1/chat/completions`.
extension OpenAIService {
    static let allowedRoles: Set<String> = ["system", "developer", "user", "assistant", "tool"]

    func chatCompletions(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(ChatCompletionRequest.self, from: request, limit: configuration.maxBodyBytes)
        let options = try GenerationOptions.validate(
            body.common, modelID: configuration.modelID, vocabularySize: tokenizer.vocabularySize)
        let messages = try Self.validatedMessages(body.messages)
        let wantsLogprobs = body.logprobs ?? false
        let topLogprobs = body.topLogprobs ?? 0
        if body.topLogprobs != nil && !wantsLogprobs {
            throw RouterError(.invalidParameter, "top_logprobs requires logprobs to be true", param: "top_logprobs")
        }
        guard (0...GenerationOptions.maxTopLogprobs).contains(topLogprobs) else {
            throw RouterError(
                .invalidParameter, "top_logprobs must be in 0...\(GenerationOptions.maxTopLogprobs), got \(topLogprobs)",
                param: "top_logprobs")
        }

        guard let template else {
            throw RouterError(
                .noChatTemplate,
                "model '\(configuration.modelID)' has no chat template (its GGUF file has no tokenizer.chat_template; "
                    + "base models do not), so messages cannot be turned into a prompt: send a raw prompt to "
                    + "/v1/completions, or start the server with --chat-template FILE (a Jinja chat template)",
                param: "messages")
        }
        let prompt: String
        do {
            prompt = try template.render(
                messages: messages, addGenerationPrompt: true, bosToken: bosText, eosToken: eosText)
        } catch {
            // Templates raise for conversations they do not accept (e.g. roles that do not alternate).
            throw RouterError(
                .invalidParameter, "the chat template rejected the messages: \(error.message)", param: "messages",
                cause: error)
        }
        let promptTokens = tokenizePrompt(prompt)
        let id = Self.makeID(prefix: "chatcmpl-")
        let state = try options.state(
            id: id, prompt: promptTokens, promptParameter: "messages", logprobs: wantsLogprobs ? topLogprobs : nil,
            contextLength: configuration.contextLength, defaultMaxTokens: configuration.defaultMaxTokens,
            vocabularySize: tokenizer.vocabularySize)
        let (stream, tracker) = try await start(state, promptParameter: "messages")
        let transcript = GenerationTranscript(tokenizer: tokenizer, stop: options.stop, logprobs: wantsLogprobs)
        let created = Self.now
        logger.debug("chat completion started", metadata: ["id": "\(id)", "prompt_tokens": "\(promptTokens.count)"])

        if options.stream {
            return streamChat(
                stream, tracker: tracker, transcript: transcript, id: id, created: created,
                includeUsage: options.includeUsage, promptTokens: promptTokens.count, logprobs: wantsLogprobs)
        }

        var collector = ChatCollector(transcript: transcript, promptTokens: promptTokens.count)
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
        return JSONBody.response(ChatCompletionResponse(
            id: id, created: created, model: configuration.modelID,
            choices: [.init(
                message: AssistantMessage(content: collector.text),
                logprobs: wantsLogprobs ? ChatLogprobs(content: collector.logprobs) : nil,
                finishReason: collector.finishReason)],
            usage: usage, servedBy: ServedBy(collector.summary)))
    }

    private func streamChat(
        _ stream: GenerationStream, tracker: LatencyTracker,
        transcript: GenerationTranscript, id: String, created: Int, includeUsage: Bool, promptTokens: Int,
        logprobs: Bool
    ) -> Response {
        let model = configuration.modelID
        let deadline = self.deadline
        let logger = self.logger
        let body = ResponseBody { writer in
            let encoder = JSONBody.makeEncoder()
            func chunk(
                _ delta: ChatCompletionChunk.Delta, logprobs: ChatLogprobs? = nil, finishReason: String? = nil,
                servedBy: ServedBy? = nil
            ) -> ByteBuffer {
                JSONBody.event(
                    ChatCompletionChunk(
                        id: id, created: created, model: model,
                        choices: [.init(delta: delta, logprobs: logprobs, finishReason: finishReason)],
                        usage: nil, includeUsageField: includeUsage, servedBy: servedBy),
                    encoder: encoder)
            }
            var collector = ChatCollector(transcript: transcript, promptTokens: promptTokens)
            defer { tracker.finish(promptTokens: nil, completionTokens: nil) }
            try await writer.write(chunk(.init(role: "assistant", content: "")))
            do {
                try await GenerationPump.run(stream, deadline: deadline) { event in
                    tracker.observe(event)
                    let added = collector.accept(event)
                    if !added.text.isEmpty || !added.logprobs.isEmpty {
                        try await writer.write(chunk(
                            .init(content: added.text), logprobs: logprobs ? ChatLogprobs(content: added.logprobs) : nil))
                    }
                    return added.decision
                }
            } catch let error as CancellationError {
                throw error
            } catch {
                // Headers are sent: report the failure in-band, as OpenAI's streams do, then end the stream.
                logger.warning("chat completion failed mid-stream", metadata: ["id": "\(id)", "error": "\(error)"])
                try await writer.write(JSONBody.event(OpenAIErrorBody(RouterError.wrapping(error))))
                try await writer.write(JSONBody.doneEvent)
                try await writer.finish(nil)
                return
            }
            let usage = collector.usage
            tracker.finish(promptTokens: usage.promptTokens, completionTokens: usage.completionTokens)
            try await writer.write(chunk(.init(), finishReason: collector.finishReason, servedBy: ServedBy(collector.summary)))
            if includeUsage {
                try await writer.write(JSONBody.event(ChatCompletionChunk(
                    id: id, created: created, model: model, choices: [], usage: usage, includeUsageField: true), encoder: encoder))
            }
            try await writer.write(JSONBody.doneEvent)
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: Self.eventStreamHeaders, body: body)
    }

    static let eventStreamHeaders: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache",
    ]

    /// Checks roles and contents and maps `developer` to `system` (the templates know only the classic roles).
    static func validatedMessages(_ messages: [IncomingChatMessage]?) throws(RouterError) -> [ChatMessage] {
        guard let messages else {
            throw RouterError(.missingParameter, "Missing required parameter: 'messages'.", param: "messages")
        }
        guard !messages.isEmpty else {
            throw RouterError(.invalidParameter, "messages must contain at least one message", param: "messages")
        }
        return try messages.enumerated().map { (index, message) throws(RouterError) in
            guard let role = message.role else {
                throw RouterError(
                    .missingParameter, "Missing required parameter: 'messages[\(index)].role'.",
                    param: "messages[\(index)].role")
            }
            guard allowedRoles.contains(role) else {
                throw RouterError(
                    .invalidParameter,
                    "Invalid value: '\(role)'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.",
                    param: "messages[\(index)].role")
            }
            guard message.content != nil || role == "assistant" else {
                throw RouterError(
                    .missingParameter, "Missing required parameter: 'messages[\(index)].content'.",
                    param: "messages[\(index)].content")
            }
            return ChatMessage(
                role: role == "developer" ? "system" : role, content: message.content?.text ?? "", name: message.name,
                toolCallID: message.toolCallID)
        }
    }
}

/// Accumulates a chat completion's text, logprobs entries, finish reason and usage from backend events.
struct ChatCollector: Sendable {
    private var transcript: GenerationTranscript
    let promptTokens: Int
    private(set) var text = ""
    private(set) var logprobs: [ChatTokenLogprobEntry] = []
    private(set) var finishReason = "stop"
    /// The backend's summary, once it finished (not when a stop string ended the generation first).
    private(set) var summary: GenerationSummary?
    private var completionTokens: Int?

    init(transcript: GenerationTranscript, promptTokens: Int) {
        self.transcript = transcript
        self.promptTokens = promptTokens
    }

    var usage: Usage { Usage(promptTokens: promptTokens, completionTokens: completionTokens ?? transcript.tokenCount) }

    /// What one event added, and whether to keep consuming.
    struct Added {
        var decision: GenerationPump.Decision
        var text: String
        var logprobs: [ChatTokenLogprobEntry]
    }

    mutating func accept(_ event: GenerationEvent) -> Added {
        switch event {
        case .token(let token):
            let step = transcript.accept(token)
            let added = append(step)
            if step.stopped {
                finishReason = "stop"
                completionTokens = transcript.tokenCount
                return Added(decision: .stop, text: step.text, logprobs: added)
            }
            return Added(decision: .proceed, text: step.text, logprobs: added)
        case .finished(let summary):
            self.summary = summary
            let step = transcript.finish()
            let added = append(step)
            finishReason = step.stopped ? "stop" : summary.reason.openAIValue
            completionTokens = step.stopped ? transcript.tokenCount : summary.completionTokens
            return Added(decision: .proceed, text: step.text, logprobs: added)
        }
    }

    private mutating func append(_ step: GenerationTranscript.Step) -> [ChatTokenLogprobEntry] {
        text += step.text
        guard let entry = step.logprob else { return [] }
        let rendered = ChatTokenLogprobEntry(
            token: entry.token, logprob: entry.logprob, bytes: entry.bytes,
            topLogprobs: entry.top.map { ChatTopLogprob(token: $0.token, logprob: $0.logprob, bytes: $0.bytes) })
        logprobs.append(rendered)
        return [rendered]
    }
}
