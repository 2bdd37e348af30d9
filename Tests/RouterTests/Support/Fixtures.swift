import Generation
import ChatTemplates
import Foundation
import GGUF
import Hummingbird
import HummingbirdTesting
import Router
import Testing
import Tokenization

/// The default model's tokenizer and chat template, loaded once. A missing model fails loudly (CI fetches it).
enum Fixtures {
    struct Model: Sendable {
        let tokenizer: Tokenizer
        let template: ChatTemplate
    }

    static let model: Result<Model, any Error> = Result {
        let path = try DefaultModel.resolve(nil)
        let gguf = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: gguf)
        let template = try ChatTemplate(source: gguf.string("tokenizer.chat_template"))
        return Model(tokenizer: tokenizer, template: template)
    }

    static func loadModel() throws -> Model {
        do {
            return try model.get()
        } catch {
            Issue.record("the router tests need the default model at \(DefaultModel.path): \(error)")
            throw error
        }
    }

    static let modelID = "smollm2-test"

    static func configuration(contextLength: Int = 512, defaultMaxTokens: Int = 64) -> RouterConfiguration {
        RouterConfiguration(host: "127.0.0.1", port: 0, modelID: modelID, contextLength: contextLength, defaultMaxTokens: defaultMaxTokens)
    }

    /// Builds the application around `backend` (a fake over the real tokenizer unless given).
    static func application(
        backend: (Tokenizer) -> any GenerationBackend = { FakeBackend(tokenizer: $0) },
        configuration: RouterConfiguration = configuration(),
        apiKeys: APIKeySet? = nil,
        metrics: RouterMetrics = RouterMetrics(),
        withoutTemplate: Bool = false,
        cluster: (any ClusterInsight)? = nil
    ) throws -> (some ApplicationProtocol, any GenerationBackend, Model) {
        let model = try loadModel()
        let backend = backend(model.tokenizer)
        let app = try makeRouterApplication(
            configuration: configuration, tokenizer: model.tokenizer, template: withoutTemplate ? nil : model.template,
            backend: backend,
            apiKeys: apiKeys, metrics: metrics, cluster: cluster)
        return (app, backend, model)
    }
}

/// JSON helpers for pinning response shapes.
func jsonObject(_ buffer: ByteBuffer) throws -> [String: Any] {
    let data = Data(buffer.readableBytesView)
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw JSONShapeError(text: String(decoding: data, as: UTF8.self))
    }
    return object
}

struct JSONShapeError: Error, CustomStringConvertible {
    let text: String
    var description: String { "not a JSON object: \(text)" }
}

func jsonBody(_ object: [String: Any]) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

/// Splits a server-sent event stream into its `data:` payloads.
func eventPayloads(_ buffer: ByteBuffer) -> [String] {
    String(buffer: buffer)
        .components(separatedBy: "\n\n")
        .filter { !$0.isEmpty }
        .map { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : "<not data: \($0)>" }
}

func parseJSON(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw JSONShapeError(text: text)
    }
    return object
}

/// Checks an OpenAI error response: status and every field of `{"error": {...}}`.
func expectOpenAIError(
    _ response: TestResponse, status: HTTPResponse.Status, code: String, param: String?,
    messageContains: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    #expect(response.status == status, sourceLocation: sourceLocation)
    #expect(response.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
    let object = try jsonObject(response.body)
    let error = try #require(object["error"] as? [String: Any], sourceLocation: sourceLocation)
    #expect(Set(error.keys) == ["message", "type", "param", "code"], sourceLocation: sourceLocation)
    #expect(error["code"] as? String == code, sourceLocation: sourceLocation)
    #expect(error["type"] is String, sourceLocation: sourceLocation)
    if let param {
        #expect(error["param"] as? String == param, sourceLocation: sourceLocation)
    } else {
        #expect(error["param"] is NSNull, sourceLocation: sourceLocation)
    }
    let message = try #require(error["message"] as? String, sourceLocation: sourceLocation)
    #expect(!message.isEmpty, sourceLocation: sourceLocation)
    if let messageContains {
        #expect(message.contains(messageContains), "message: \(message)", sourceLocation: sourceLocation)
    }
}
