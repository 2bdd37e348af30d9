import Generation

// Response bodies, shaped exactly as OpenAI's: fields OpenAI sends as `null` are encoded as `null`, not omitted.

/// `usage`.
struct Usage: Encodable, Equatable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// One alternative in `top_logprobs` of a chat logprobs entry.
struct ChatTopLogprob: Encodable, Equatable {
    var token: String
    var logprob: Float
    var bytes: [UInt8]
}

/// One element of `choices[].logprobs.content`.
struct ChatTokenLogprobEntry: Encodable, Equatable {
    var token: String
    var logprob: Float
    var bytes: [UInt8]
    var topLogprobs: [ChatTopLogprob]

    enum CodingKeys: String, CodingKey {
        case token, logprob, bytes
        case topLogprobs = "top_logprobs"
    }
}

/// `choices[].logprobs` of a chat completion or chunk.
struct ChatLogprobs: Encodable, Equatable {
    var content: [ChatTokenLogprobEntry]
    var refusal: [ChatTokenLogprobEntry]? = nil

    enum CodingKeys: String, CodingKey { case content, refusal }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(content, forKey: .content)
        try container.encode(refusal, forKey: .refusal)
    }
}

/// `choices[].message`.
struct AssistantMessage: Encodable, Equatable {
    var role = "assistant"
    var content: String
    var refusal: String? = nil

    enum CodingKeys: String, CodingKey { case role, content, refusal }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(role, forKey: .role)
        try container.encode(content, forKey: .content)
        try container.encode(refusal, forKey: .refusal)
    }
}

/// `object: "chat.completion"`.
struct ChatCompletionResponse: Encodable, Equatable {
    struct Choice: Encodable, Equatable {
        var index = 0
        var message: AssistantMessage
        var logprobs: ChatLogprobs?
        var finishReason: String

        enum CodingKeys: String, CodingKey {
            case index, message, logprobs
            case finishReason = "finish_reason"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(message, forKey: .message)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage
    var systemFingerprint: String? = nil
    var servedBy: ServedBy? = nil

    func encode(to encoder: any Encoder) throws {
        try encodeCompletionEnvelope(
            to: encoder, id: id, object: object, created: created, model: model, choices: choices, usage: usage,
            includeUsage: true, systemFingerprint: systemFingerprint, servedBy: servedBy)
    }
}

/// `object: "chat.completion.chunk"`, one SSE event of a streamed chat completion.
struct ChatCompletionChunk: Encodable, Equatable {
    struct Delta: Encodable, Equatable {
        var role: String?
        var content: String?

        enum CodingKeys: String, CodingKey { case role, content }

        func encode(to encoder: any Encoder) throws {
            // The final chunk's delta is `{}`; others carry only what they add.
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(role, forKey: .role)
            try container.encodeIfPresent(content, forKey: .content)
        }
    }

    struct Choice: Encodable, Equatable {
        var index = 0
        var delta: Delta
        var logprobs: ChatLogprobs?
        var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, delta, logprobs
            case finishReason = "finish_reason"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(delta, forKey: .delta)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [Choice]
    /// Encoded only when the client asked for `stream_options.include_usage` (then `null` until the last chunk).
    var usage: Usage?
    var includeUsageField: Bool
    var systemFingerprint: String? = nil
    /// Set on the chunk that carries the finish reason.
    var servedBy: ServedBy? = nil

    func encode(to encoder: any Encoder) throws {
        try encodeCompletionEnvelope(
            to: encoder, id: id, object: object, created: created, model: model, choices: choices, usage: usage,
            includeUsage: includeUsageField, systemFingerprint: systemFingerprint, servedBy: servedBy)
    }
}

/// Legacy `choices[].logprobs` of `/v1/completions`.
struct CompletionLogprobs: Encodable, Equatable {
    var tokens: [String] = []
    var tokenLogprobs: [Float] = []
    var topLogprobs: [[String: Float]] = []
    var textOffset: [Int] = []

    enum CodingKeys: String, CodingKey {
        case tokens
        case tokenLogprobs = "token_logprobs"
        case topLogprobs = "top_logprobs"
        case textOffset = "text_offset"
    }
}

/// `object: "text_completion"`, both the whole response and each streamed chunk.
struct CompletionResponse: Encodable, Equatable {
    struct Choice: Encodable, Equatable {
        var text: String
        var index = 0
        var logprobs: CompletionLogprobs?
        var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case text, index, logprobs
            case finishReason = "finish_reason"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(text, forKey: .text)
            try container.encode(index, forKey: .index)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?
    /// Streamed chunks encode `usage` only when `stream_options.include_usage` was set; whole responses always.
    var includeUsageField: Bool
    var systemFingerprint: String? = nil

    func encode(to encoder: any Encoder) throws {
        try encodeCompletionEnvelope(
            to: encoder, id: id, object: object, created: created, model: model, choices: choices, usage: usage,
            includeUsage: includeUsageField, systemFingerprint: systemFingerprint)
    }
}

/// `GET /v1/models` and `GET /v1/models/{id}`.
struct ModelObject: Encodable, Equatable {
    var id: String
    var object = "model"
    var created: Int
    var ownedBy: String

    enum CodingKeys: String, CodingKey {
        case id, object, created
        case ownedBy = "owned_by"
    }
}

struct ModelList: Encodable, Equatable {
    var object = "list"
    var data: [ModelObject]
}

/// `POST /tokenize` answer: plain ids, or ids with pieces when `with_pieces` is set.
struct TokenizeResponse: Encodable {
    struct Piece: Encodable {
        var id: Int32
        /// The piece as text when it is valid UTF-8, else its bytes (as llama-server does).
        var piece: PieceValue
    }

    enum PieceValue: Encodable {
        case text(String)
        case bytes([UInt8])

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .text(let text): try container.encode(text)
            case .bytes(let bytes): try container.encode(bytes)
            }
        }
    }

    enum Tokens: Encodable {
        case ids([Int32])
        case pieces([Piece])

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .ids(let ids): try container.encode(ids)
            case .pieces(let pieces): try container.encode(pieces)
            }
        }
    }

    var tokens: Tokens
}

struct DetokenizeResponse: Encodable {
    var content: String
}

struct HealthResponse: Encodable {
    /// "ok" or "degraded".
    var status: String
    /// Why degraded, since when (ISO 8601) and for how many seconds; absent when ok.
    var reason: String?
    var since: String?
    var sinceSeconds: Double?

    enum CodingKeys: String, CodingKey { case status, reason, since, sinceSeconds = "since_seconds" }
}

/// `{"error": {"message", "type", "param", "code"}}`.
struct OpenAIErrorBody: Encodable, Equatable {
    struct Detail: Encodable, Equatable {
        var message: String
        var type: String
        var param: String?
        var code: String?

        enum CodingKeys: String, CodingKey { case message, type, param, code }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(message, forKey: .message)
            try container.encode(type, forKey: .type)
            try container.encode(param, forKey: .param)
            try container.encode(code, forKey: .code)
        }
    }

    var error: Detail

    init(_ error: RouterError) {
        self.error = Detail(message: error.message, type: error.code.type, param: error.param, code: error.code.name)
    }
}

/// `baton`, Baton's own field on a chat completion and on a stream's final chunk (as llama-server adds `timings`;
/// OpenAI clients ignore it): where the reply was made. Absent when the generation ran in this process.
struct ServedBy: Encodable, Equatable {
    /// Nil when the decode worker also ran the prompt (`decode_only`).
    var prefillWorker: String?
    var decodeWorker: String
    /// How the prompt's KV reached the decode worker; nil when it did not move.
    var kvTransport: String?
    var kvBytes: Int?
    var kvTransferMs: Double?
    /// Prompt positions the decode worker's prefix cache held, and their KV bytes the transfer did not carry.
    var kvCachedTokens: Int?
    var kvBytesNotShipped: Int?

    init?(_ summary: GenerationSummary?) {
        guard let summary, let workers = summary.workers else { return nil }
        prefillWorker = workers.prefill
        decodeWorker = workers.decode
        kvTransport = summary.handoff?.transport
        kvBytes = summary.handoff?.bytes
        kvTransferMs = summary.handoff.map { ($0.seconds * 1e6).rounded() / 1e3 }
        kvCachedTokens = summary.handoff?.cachedTokens
        kvBytesNotShipped = summary.handoff?.bytesNotShipped
    }

    enum CodingKeys: String, CodingKey {
        case prefillWorker = "prefill_worker", decodeWorker = "decode_worker", kvTransport = "kv_transport"
        case kvBytes = "kv_bytes", kvTransferMs = "kv_transfer_ms"
        case kvCachedTokens = "kv_cached_tokens", kvBytesNotShipped = "kv_bytes_not_shipped"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(prefillWorker, forKey: .prefillWorker)
        try container.encode(decodeWorker, forKey: .decodeWorker)
        try container.encode(kvTransport, forKey: .kvTransport)
        try container.encode(kvBytes, forKey: .kvBytes)
        try container.encode(kvTransferMs, forKey: .kvTransferMs)
        try container.encode(kvCachedTokens, forKey: .kvCachedTokens)
        try container.encode(kvBytesNotShipped, forKey: .kvBytesNotShipped)
    }
}

private enum CompletionEnvelopeKeys: String, CodingKey {
    case id, object, created, model, choices, usage
    case systemFingerprint = "system_fingerprint"
    case baton
}

/// The fields every completion object and chunk carries, in one place. `usage` is written (possibly as
/// `null`) only when `includeUsage` is set; `system_fingerprint` is always written, `null` when absent.
private func encodeCompletionEnvelope<Choice: Encodable>(
    to encoder: any Encoder, id: String, object: String, created: Int, model: String, choices: [Choice],
    usage: Usage?, includeUsage: Bool, systemFingerprint: String?, servedBy: ServedBy? = nil
) throws {
    var container = encoder.container(keyedBy: CompletionEnvelopeKeys.self)
    try container.encode(id, forKey: .id)
    try container.encode(object, forKey: .object)
    try container.encode(created, forKey: .created)
    try container.encode(model, forKey: .model)
    try container.encode(choices, forKey: .choices)
    if includeUsage { try container.encode(usage, forKey: .usage) }
    try container.encode(systemFingerprint, forKey: .systemFingerprint)
    try container.encodeIfPresent(servedBy, forKey: .baton)
}
