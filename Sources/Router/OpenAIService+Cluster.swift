import ChatTemplates
import Hummingbird

/// `GET /cluster/status` and `POST /cluster/explain`: the cluster as placement sees it, for the page and for tools.
extension OpenAIService {
    /// Placement's status document as it is (see ``ClusterInsight/statusJSON()``).
    func clusterStatus(_ cluster: (any ClusterInsight)?) async throws(RouterError) -> Response {
        let json = try await Self.required(cluster).statusJSON()
        return Self.jsonResponse(json)
    }

    /// `{"prompt_tokens": N}` or `{"prompt": TEXT}` → placement's explanation of where such a prompt would run now.
    /// A text is tokenized as a chat request with it as the one user message would be (through the chat template),
    /// or as a raw completion prompt when the model has no template, and its token ids go along: the explanation then
    /// shows what each worker's prefix caches hold of it.
    func clusterExplain(_ request: Request, cluster: (any ClusterInsight)?) async throws -> Response {
        let insight = try Self.required(cluster)
        let body = try await JSONBody.decode(ExplainRequest.self, from: request, limit: configuration.maxBodyBytes)
        let tokens: Int
        var ids: [Int32]?
        switch (body.promptTokens, body.prompt) {
        case (let count?, nil):
            guard (0...configuration.contextLength).contains(count) else {
                throw RouterError(
                    .invalidParameter, "prompt_tokens must be in 0...\(configuration.contextLength) (the context), got \(count)",
                    param: "prompt_tokens")
            }
            tokens = count
        case (nil, let text?):
            ids = try tokenize(text)
            tokens = ids?.count ?? 0
        default:
            throw RouterError(.invalidParameter, "give exactly one of prompt_tokens or prompt", param: "prompt_tokens")
        }
        return Self.jsonResponse(try await insight.explainJSON(promptTokens: tokens, prompt: ids))
    }

    private func tokenize(_ text: String) throws(RouterError) -> [Int32] {
        guard let template else { return tokenizePrompt(text) }
        do {
            let prompt = try template.render(
                messages: [ChatMessage(role: "user", content: text)], addGenerationPrompt: true, bosToken: bosText,
                eosToken: eosText)
            return tokenizePrompt(prompt)
        } catch {
            throw RouterError(
                .invalidParameter, "the chat template rejected the prompt: \(error.message)", param: "prompt", cause: error)
        }
    }

    private static func required(_ cluster: (any ClusterInsight)?) throws(RouterError) -> any ClusterInsight {
        guard let cluster else {
            throw RouterError(
                .notFound, "this server runs the model in its own process (baton serve): there is no cluster to show")
        }
        return cluster
    }

    private static func jsonResponse(_ bytes: [UInt8]) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// `POST /cluster/explain` body.
struct ExplainRequest: Decodable {
    var promptTokens: Int?
    var prompt: String?

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", prompt
    }
}
