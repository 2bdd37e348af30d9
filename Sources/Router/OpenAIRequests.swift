// Request bodies of the OpenAI-compatible endpoints, decoded as sent. Validation lives in
// `GenerationOptions.swift`; unknown fields are ignored as OpenAI's API does.

/// `stop`: a string or an array of strings.
struct StopField: Decodable, Equatable {
    var values: [String]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let single = try? container.decode(String.self) {
            values = [single]
        } else {
            values = try container.decode([String].self)
        }
    }
}

/// `stream_options`.
struct StreamOptions: Decodable, Equatable {
    var includeUsage: Bool?

    enum CodingKeys: String, CodingKey {
        case includeUsage = "include_usage"
    }
}

/// A chat message's `content`: a string, null, or an array of parts of which only `text` parts are supported.
struct MessageContent: Decodable, Equatable {
    var text: String

    struct Part: Decodable {
        var type: String
        var text: String?
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            text = ""
        } else if let string = try? container.decode(String.self) {
            text = string
        } else {
            let parts = try container.decode([Part].self)
            var text = ""
            for part in parts {
                guard part.type == "text", let partText = part.text else {
                    throw DecodingError.dataCorrupted(.init(
                        codingPath: decoder.codingPath,
                        debugDescription: "content part of type '\(part.type)' is not supported; only 'text' parts are"))
                }
                text += partText
            }
            self.text = text
        }
    }
}

/// One element of `messages`.
struct IncomingChatMessage: Decodable, Equatable {
    var role: String?
    var content: MessageContent?
    var name: String?
    var toolCallID: String?

    enum CodingKeys: String, CodingKey {
        case role, content, name
        case toolCallID = "tool_call_id"
    }
}

/// Sampling and output fields shared by chat completions and completions.
struct CommonGenerationFields: Decodable, Equatable {
    var model: String?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    var seed: Int64?
    var stop: StopField?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var logitBias: [String: Double]?
    var n: Int?
    var user: String?
    /// vLLM's and llama-server's extra sampling parameters.
    var topK: Int?
    var minP: Double?
    var repetitionPenalty: Double?

    enum CodingKeys: String, CodingKey {
        case model, stream, temperature, seed, stop, n, user
        case topK = "top_k"
        case minP = "min_p"
        case repetitionPenalty = "repetition_penalty"
        case streamOptions = "stream_options"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case logitBias = "logit_bias"
    }
}

/// `POST /v1/chat/completions`.
struct ChatCompletionRequest: Decodable, Equatable {
    var common: CommonGenerationFields
    var messages: [IncomingChatMessage]?
    var logprobs: Bool?
    var topLogprobs: Int?

    enum CodingKeys: String, CodingKey {
        case messages, logprobs
        case topLogprobs = "top_logprobs"
    }

    init(from decoder: any Decoder) throws {
        common = try CommonGenerationFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        messages = try container.decodeIfPresent([IncomingChatMessage].self, forKey: .messages)
        logprobs = try container.decodeIfPresent(Bool.self, forKey: .logprobs)
        topLogprobs = try container.decodeIfPresent(Int.self, forKey: .topLogprobs)
    }
}

/// `prompt` of `POST /v1/completions`: a string, an array holding one string, or an array of token ids.
enum PromptField: Decodable, Equatable {
    case text(String)
    case tokens([Int32])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .text(text)
        } else if let tokens = try? container.decode([Int32].self) {
            self = .tokens(tokens)
        } else if let texts = try? container.decode([String].self) {
            guard texts.count == 1 else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "exactly one prompt per request is supported, got \(texts.count)"))
            }
            self = .text(texts[0])
        } else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath,
                debugDescription: "prompt must be a string, an array of one string, or an array of token ids"))
        }
    }
}

/// `POST /v1/completions`.
struct CompletionRequest: Decodable, Equatable {
    var common: CommonGenerationFields
    var prompt: PromptField?
    /// Legacy logprobs: how many alternatives per token (0...5 in OpenAI's API; up to 20 here).
    var logprobs: Int?
    var echo: Bool?
    var suffix: String?
    var bestOf: Int?

    enum CodingKeys: String, CodingKey {
        case prompt, logprobs, echo, suffix
        case bestOf = "best_of"
    }

    init(from decoder: any Decoder) throws {
        common = try CommonGenerationFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decodeIfPresent(PromptField.self, forKey: .prompt)
        logprobs = try container.decodeIfPresent(Int.self, forKey: .logprobs)
        echo = try container.decodeIfPresent(Bool.self, forKey: .echo)
        suffix = try container.decodeIfPresent(String.self, forKey: .suffix)
        bestOf = try container.decodeIfPresent(Int.self, forKey: .bestOf)
    }
}

/// `POST /tokenize`, as llama-server has it.
struct TokenizeRequest: Decodable, Equatable {
    var content: String?
    var addSpecial: Bool?
    var parseSpecial: Bool?
    var withPieces: Bool?

    enum CodingKeys: String, CodingKey {
        case content
        case addSpecial = "add_special"
        case parseSpecial = "parse_special"
        case withPieces = "with_pieces"
    }
}

/// `POST /detokenize`, as llama-server has it.
struct DetokenizeRequest: Decodable, Equatable {
    var tokens: [Int32]?
}
