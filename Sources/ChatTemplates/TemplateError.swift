/// The one error type of the chat-template module: a code to match on, a message for people, the
/// position in the template source when one is known, and the cause.
///
/// For errors that jinja2 also raises at render time (`raise_exception`, undefined values, type errors),
/// `message` is worded exactly as jinja2 words it, so callers can show the template author's own text.
public struct TemplateError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The template source is not valid Jinja.
        public static let syntax = Code("template syntax error")
        /// Valid Jinja that this interpreter does not implement (a tag, filter, test or method).
        public static let unsupported = Code("unsupported template construct")
        /// The template called `raise_exception(message)`.
        public static let raised = Code("template raised an exception")
        /// An undefined value was used where jinja2 refuses one.
        public static let undefined = Code("undefined value")
        /// An operation got a value of the wrong type (jinja2 raises a Python TypeError or ValueError).
        public static let type = Code("type error")
        /// Invalid input handed to the API (for example JSON text that does not parse).
        public static let invalidArgument = Code("invalid argument")
    }

    public let code: Code
    public let message: String
    /// 1-based line and column in the template source, when known.
    public let line: Int?
    public let column: Int?
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, line: Int? = nil, column: Int? = nil,
                cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.cause = cause
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let line, let column { text += " (at \(line):\(column))" }
        if let cause { text += " (caused by: \(cause))" }
        return text
    }

    /// The same error with a position attached, unless it already has one.
    func located(_ position: SourcePosition) -> TemplateError {
        if line != nil { return self }
        return TemplateError(code, message, line: position.line, column: position.column, cause: cause)
    }
}

/// A 1-based line and column in the template source.
struct SourcePosition: Sendable, Equatable, CustomStringConvertible {
    var line: Int
    var column: Int
    var description: String { "\(line):\(column)" }
}
