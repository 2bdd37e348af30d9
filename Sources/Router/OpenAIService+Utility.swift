import Foundation
import Generation
import Hummingbird
import Tokenization

/// Models, health, metrics and llama-server's tokenize/detokenize.
extension OpenAIService {
    func models() -> Response {
        JSONBody.response(ModelList(data: [modelObject]))
    }

    func model(id: String) throws(RouterError) -> Response {
        guard id == configuration.modelID else {
            throw RouterError(.modelNotFound, "The model `\(id)` does not exist; this server serves `\(configuration.modelID)`.", param: "model")
        }
        return JSONBody.response(modelObject)
    }

    private var modelObject: ModelObject {
        ModelObject(id: configuration.modelID, created: startedAt, ownedBy: configuration.ownedBy)
    }

    /// 200 `{"status": "ok"}` when the backend can serve a request, 200 `{"status": "degraded", "reason", "since"}`
    /// when it serves with less than it should have, else 503 with an OpenAI error body.
    func health() async throws(RouterError) -> Response {
        switch await backend.health() {
        case .ready:
            return JSONBody.response(HealthResponse(status: "ok"))
        case .degraded(let reason, let since):
            let date = Date(timeIntervalSince1970: since)
            return JSONBody.response(HealthResponse(
                status: "degraded", reason: reason, since: date.formatted(.iso8601),
                sinceSeconds: (Date().timeIntervalSince(date) * 10).rounded() / 10))
        case .unavailable(let reason):
            throw RouterError(.noWorkerAvailable, "not ready to serve requests: \(reason)")
        }
    }

    func metricsExposition() -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition())))
    }

    /// `{"content", "add_special" = false, "parse_special" = true, "with_pieces" = false}` → `{"tokens": [...]}`.
    func tokenize(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(TokenizeRequest.self, from: request, limit: configuration.maxBodyBytes)
        guard let content = body.content else {
            throw RouterError(.missingParameter, "Missing required parameter: 'content'.", param: "content")
        }
        let ids = tokenizer.encode(
            content, addSpecial: body.addSpecial ?? false, parseSpecial: body.parseSpecial ?? true)
        guard body.withPieces ?? false else { return JSONBody.response(TokenizeResponse(tokens: .ids(ids))) }
        let pieces = ids.map { id in
            let bytes = tokenizer.piece(id, renderSpecial: true)
            let piece: TokenizeResponse.PieceValue =
                if let text = String(validating: bytes, as: UTF8.self) { .text(text) } else { .bytes(bytes) }
            return TokenizeResponse.Piece(id: id, piece: piece)
        }
        return JSONBody.response(TokenizeResponse(tokens: .pieces(pieces)))
    }

    /// `{"tokens": [...]}` → `{"content": ...}`; ids outside the vocabulary are a 400.
    func detokenize(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(DetokenizeRequest.self, from: request, limit: configuration.maxBodyBytes)
        guard let tokens = body.tokens else {
            throw RouterError(.missingParameter, "Missing required parameter: 'tokens'.", param: "tokens")
        }
        do {
            try tokenizer.validate(tokens)
        } catch {
            throw RouterError(.invalidParameter, "tokens: \(error.message)", param: "tokens", cause: error)
        }
        return JSONBody.response(DetokenizeResponse(content: tokenizer.decode(tokens, renderSpecial: true)))
    }
}
