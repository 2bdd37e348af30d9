/// One message of a conversation, as a chat template sees it.
///
/// The template receives each message as a dictionary with the keys `role` and `content`, plus `name`,
/// `tool_call_id` and `tool_calls` only when set — the shape Hugging Face's `apply_chat_template` passes.
public struct ChatMessage: Sendable, Codable, Equatable {
    /// `system`, `user`, `assistant` or `tool` (templates may accept others).
    public var role: String
    public var content: String
    /// The tool's name on a `tool` message (optional).
    public var name: String?
    /// On a `tool` message: the id of the tool call this message answers.
    public var toolCallID: String?
    /// On an `assistant` message: the tool calls it makes.
    public var toolCalls: [ChatToolCall]?

    public init(role: String, content: String, name: String? = nil, toolCallID: String? = nil,
                toolCalls: [ChatToolCall]? = nil) {
        self.role = role
        self.content = content
        self.name = name
        self.toolCallID = toolCallID
        self.toolCalls = toolCalls
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: "assistant", content: content) }

    enum CodingKeys: String, CodingKey {
        case role, content, name
        case toolCallID = "tool_call_id"
        case toolCalls = "tool_calls"
    }
}

/// A function call made by an assistant message (OpenAI style: the arguments are JSON text).
///
/// Templates see `{"id": id, "type": "function", "function": {"name": name, "arguments": {...}}}`, with
/// `id` only when set and the arguments parsed into an (ordered) object when they are valid JSON — as
/// Hugging Face templates expect — or left as the string otherwise.
public struct ChatToolCall: Sendable, Codable, Equatable {
    public var id: String?
    public var name: String
    /// JSON text, usually an object.
    public var arguments: String

    public init(id: String? = nil, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

extension ChatMessage {
    /// The dictionary a template sees for this message.
    var templateValue: TemplateValue {
        var fields: [(String, TemplateValue)] = [("role", .string(role)), ("content", .string(content))]
        if let name { fields.append(("name", .string(name))) }
        if let toolCallID { fields.append(("tool_call_id", .string(toolCallID))) }
        if let toolCalls {
            fields.append(("tool_calls", .array(toolCalls.map(\.templateValue))))
        }
        return .object(TemplateObject(fields))
    }
}

extension ChatToolCall {
    var templateValue: TemplateValue {
        var fields: [(String, TemplateValue)] = []
        if let id { fields.append(("id", .string(id))) }
        fields.append(("type", .string("function")))
        let parsedArguments = (try? TemplateValue(jsonText: arguments)) ?? .string(arguments)
        fields.append(("function", .object(TemplateObject([("name", .string(name)), ("arguments", parsedArguments)]))))
        return .object(TemplateObject(fields))
    }
}
