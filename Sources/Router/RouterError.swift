import Generation

/// The one error type of the router: a code to match on, a message for people, and the cause.
///
/// Backends throw `GenerationError`, which `init(_:)` maps here: `.unavailable` becomes HTTP 503, `.overloaded`
/// 429 with a `Retry-After` header (``retryAfterSeconds``), `.invalidArgument` and `.contextLengthExceeded` 400,
/// `.timeout` 504; any other error is a 500. Only the router turns errors into OpenAI error JSON (`{"error":
/// {"message", "type", "param", "code"}}`); see `RouterError+HTTP.swift`.
public struct RouterError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over, with the HTTP status and OpenAI `type` it maps to.
    /// Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// Stable identifier; also the OpenAI `error.code` string.
        public let name: String
        /// HTTP status code the error is served with.
        public let httpStatus: Int
        /// OpenAI `error.type`.
        public let type: String

        public init(_ name: String, httpStatus: Int, type: String) {
            self.name = name
            self.httpStatus = httpStatus
            self.type = type
        }

        public var description: String { name }

        /// The request body is not valid JSON, or a field has the wrong JSON type.
        public static let invalidJSON = Code("invalid_json", httpStatus: 400, type: "invalid_request_error")
        /// A parameter is missing, out of range or not supported; `param` names it.
        public static let invalidParameter = Code("invalid_value", httpStatus: 400, type: "invalid_request_error")
        /// A required parameter is absent; `param` names it.
        public static let missingParameter = Code("missing_required_parameter", httpStatus: 400, type: "invalid_request_error")
        /// The prompt does not fit in the model's context window.
        public static let contextLengthExceeded = Code("context_length_exceeded", httpStatus: 400, type: "invalid_request_error")
        /// The requested model is not served here.
        public static let modelNotFound = Code("model_not_found", httpStatus: 404, type: "invalid_request_error")
        /// The path does not exist.
        public static let notFound = Code("not_found", httpStatus: 404, type: "invalid_request_error")
        /// The path exists but not with this HTTP method.
        public static let methodNotAllowed = Code("method_not_allowed", httpStatus: 405, type: "invalid_request_error")
        /// The request body is larger than the router accepts.
        public static let bodyTooLarge = Code("request_too_large", httpStatus: 413, type: "invalid_request_error")
        /// No or a wrong bearer API key.
        public static let invalidAPIKey = Code("invalid_api_key", httpStatus: 401, type: "invalid_request_error")
        /// No worker can serve the request right now (thrown by backends).
        public static let noWorkerAvailable = Code("no_worker_available", httpStatus: 503, type: "service_unavailable_error")
        /// The cluster is at capacity; retry later (thrown by backends).
        public static let overloaded = Code("rate_limit_exceeded", httpStatus: 429, type: "rate_limit_error")
        /// The request did not finish within the configured request timeout.
        public static let timeout = Code("timeout", httpStatus: 504, type: "timeout_error")
        /// The backend failed while generating (thrown by backends).
        public static let backendFailure = Code("backend_failure", httpStatus: 500, type: "server_error")
        /// Anything else: a bug or an unexpected failure.
        public static let internalError = Code("internal_error", httpStatus: 500, type: "server_error")
        /// A chat completion for a model that has no chat template (a base model) and was given none.
        public static let noChatTemplate = Code("chat_template_missing", httpStatus: 400, type: "invalid_request_error")
        /// The router could not be configured (bad API key file, bad settings).
        public static let invalidConfiguration = Code("invalid_configuration", httpStatus: 500, type: "server_error")
    }

    public let code: Code
    public let message: String
    /// The request parameter at fault, reported as OpenAI's `error.param`.
    public let param: String?
    /// For ``Code/overloaded``: seconds the client should wait, sent as `Retry-After`.
    public let retryAfterSeconds: Int?
    public let cause: (any Error & Sendable)?

    public init(
        _ code: Code, _ message: String, param: String? = nil, retryAfterSeconds: Int? = nil,
        cause: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.param = param
        self.retryAfterSeconds = retryAfterSeconds
        self.cause = cause
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let param { text += " (param: \(param))" }
        if let cause { text += " (caused by: \(cause))" }
        return text
    }

    /// The HTTP form of a backend's error. `promptParameter` names the prompt (`messages` or `prompt`) where the
    /// backend's error names the prompt.
    public init(_ error: GenerationError, promptParameter: String = "messages") {
        let code: Code = switch error.code {
        case .invalidArgument: .invalidParameter
        case .contextLengthExceeded: .contextLengthExceeded
        case .overloaded: .overloaded
        case .unavailable: .noWorkerAvailable
        case .timeout: .timeout
        default: .backendFailure
        }
        self.init(
            code, error.message, param: error.param == "prompt" ? promptParameter : error.param,
            retryAfterSeconds: error.retryAfterSeconds ?? (error.code == .overloaded ? 1 : nil), cause: error)
    }

    /// Maps any error to a `RouterError`: router errors pass through, generation errors map as `init(_:)` says,
    /// everything else is an internal error whose message does not leak internals beyond the error's description.
    public static func wrapping(_ error: any Error) -> RouterError {
        if let error = error as? RouterError { return error }
        if let error = error as? GenerationError { return RouterError(error) }
        return RouterError(.internalError, "internal error: \(error)", cause: error)
    }
}
