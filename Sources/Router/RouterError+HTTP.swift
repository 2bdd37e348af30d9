import Foundation
import Hummingbird

/// Errors render themselves as OpenAI error JSON with their status (and `Retry-After` for overload).
extension RouterError: HTTPResponseError {
    public var status: HTTPResponse.Status {
        HTTPResponse.Status(code: code.httpStatus)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        openAIResponse()
    }

    /// The OpenAI error response for this error.
    func openAIResponse() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds {
            headers[.retryAfter] = String(retryAfterSeconds)
        }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: JSONBody.buffer(OpenAIErrorBody(self))))
    }

    /// Turns whatever a handler or Hummingbird threw into the error the client sees.
    static func fromAnyError(_ error: any Error, request: Request) -> RouterError {
        switch error {
        case let error as RouterError:
            return error
        case let error as HTTPError:
            switch error.status {
            case .notFound:
                return RouterError(.notFound, "Unknown request URL: \(request.method) \(request.uri.path)")
            case .methodNotAllowed:
                return RouterError(.methodNotAllowed, "Method \(request.method) is not allowed for \(request.uri.path)")
            case .contentTooLarge:
                return RouterError(.bodyTooLarge, error.body ?? "request body too large")
            default:
                let code = Code(
                    "http_\(error.status.code)", httpStatus: error.status.code,
                    type: error.status.code < 500 ? "invalid_request_error" : "server_error")
                return RouterError(code, error.body ?? error.status.reasonPhrase, cause: error)
            }
        default:
            return RouterError.wrapping(error)
        }
    }
}

/// JSON encoding and decoding with OpenAI-style errors.
enum JSONBody {
    /// An encoder with the router's settings. Streams make one per response and reuse it for every event.
    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    /// Encodes a value; the response types here are always encodable, and a failure is reported as an error body.
    static func data(_ value: some Encodable, encoder: JSONEncoder = makeEncoder()) -> Data {
        do {
            return try encoder.encode(value)
        } catch {
            return Data(#"{"error":{"message":"response encoding failed","type":"server_error","param":null,"code":"internal_error"}}"#.utf8)
        }
    }

    static func buffer(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(bytes: data(value))
    }

    /// A 200 (or `status`) JSON response.
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer(value)))
    }

    /// One server-sent event carrying `value` as JSON (with the stream's `encoder`).
    static func event(_ value: some Encodable, encoder: JSONEncoder = makeEncoder()) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(data(value, encoder: encoder))
        buffer.writeString("\n\n")
        return buffer
    }

    static let doneEvent = ByteBuffer(string: "data: [DONE]\n\n")

    /// Reads the whole request body (at most `limit` bytes) and decodes it.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int) async throws -> T {
        var body = ByteBuffer()
        for try await chunk in request.body {
            guard body.readableBytes + chunk.readableBytes <= limit else {
                throw RouterError(.bodyTooLarge, "request body is larger than the \(limit) bytes this server accepts")
            }
            var chunk = chunk
            body.writeBuffer(&chunk)
        }
        let bytes = Data(body.readableBytesView)
        do {
            return try JSONDecoder().decode(T.self, from: bytes)
        } catch let error as DecodingError {
            throw routerError(error)
        }
    }

    /// Maps a decoding failure to a 400 naming the parameter at fault.
    static func routerError(_ error: DecodingError) -> RouterError {
        func path(_ codingPath: [any CodingKey]) -> String? {
            guard !codingPath.isEmpty else { return nil }
            var text = ""
            for key in codingPath {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
            return text
        }
        switch error {
        case .typeMismatch(let expected, let context):
            let param = path(context.codingPath)
            return RouterError(
                .invalidParameter, "Invalid type for '\(param ?? "body")': expected \(jsonTypeName(expected)).",
                param: param, cause: error)
        case .valueNotFound(let expected, let context):
            let param = path(context.codingPath)
            return RouterError(
                .invalidParameter, "Invalid value for '\(param ?? "body")': expected \(jsonTypeName(expected)), got null.",
                param: param, cause: error)
        case .keyNotFound(let key, let context):
            let param = path(context.codingPath + [key])
            return RouterError(.missingParameter, "Missing required parameter: '\(param ?? key.stringValue)'.", param: param, cause: error)
        case .dataCorrupted(let context):
            if let param = path(context.codingPath) {
                return RouterError(
                    .invalidParameter, "Invalid value for '\(param)': \(context.debugDescription)", param: param, cause: error)
            }
            return RouterError(
                .invalidJSON,
                "We could not parse the JSON body of your request. The body must be a JSON object as described in "
                    + "the OpenAI API reference.",
                cause: error)
        @unknown default:
            return RouterError(.invalidJSON, "We could not parse the JSON body of your request.", cause: error)
        }
    }

    private static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int32.Type, is Int64.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}
