/// A chat template (the Jinja source in a GGUF's `tokenizer.chat_template`), parsed once and rendered
/// for any number of conversations.
///
/// Rendering matches Python jinja2 as Hugging Face's `apply_chat_template` configures it, byte for byte:
/// a sandboxed environment with `trim_blocks` and `lstrip_blocks`, loop controls (`break`, `continue`),
/// the `generation` tag, `raise_exception(message)`, `strftime_now(format)`, and a `tojson` filter that
/// does not escape HTML or non-ASCII text. Constructs outside that subset (for example `include`,
/// `call` blocks, recursive loops, unknown filters or tests) are rejected at `init` with an
/// `.unsupported` error naming the construct and its line and column; the few that can only be seen
/// at run time (printf-style `'%s' % x`) fail the same way when rendered.
///
/// Immutable and `Sendable`: one instance can render concurrently from many tasks.
public struct ChatTemplate: Sendable {
    public let source: String
    private let nodes: [Node]

    /// Parses the template. Throws `.syntax` for invalid Jinja and `.unsupported` for Jinja this
    /// interpreter does not implement, with `line` and `column` set.
    public init(source: String) throws(TemplateError) {
        self.source = source
        var lexer = Lexer(source: source)
        var parser = Parser(tokens: try lexer.tokenize())
        nodes = try parser.parseTemplate()
    }

    /// Renders a conversation the way `apply_chat_template(messages, tokenize=False, ...)` does.
    ///
    /// The template sees `messages` (see `ChatMessage` for their shape), `add_generation_prompt`,
    /// `bos_token`, `eos_token`, `tools` and `documents` (both `none` unless given in `extraContext`,
    /// which, as in Hugging Face, makes them *defined* in either case) and every other `extraContext`
    /// entry (`date_string`, `enable_thinking`, ...).
    ///
    /// Throws `.raised` with the template's own message when it calls `raise_exception` (typically for
    /// roles it does not accept), and `.undefined`/`.type` with jinja2's wording for errors jinja2 raises.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool,
                       bosToken: String = "", eosToken: String = "",
                       extraContext: [String: TemplateValue] = [:]) throws(TemplateError) -> String {
        var context: [String: TemplateValue] = [
            "messages": .array(messages.map(\.templateValue)),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
            "tools": .none,
            "documents": .none,
        ]
        for (key, value) in extraContext { context[key] = value }
        return try render(context: context)
    }

    /// Renders with exactly the given variables (plus the global functions), for templates that are not
    /// chat templates or callers that build the context themselves.
    public func render(context: [String: TemplateValue]) throws(TemplateError) -> String {
        let interpreter = Interpreter(context: context.mapValues(Value.init))
        return try interpreter.render(nodes)
    }
}
