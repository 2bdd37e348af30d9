import Generation
import ChatTemplates
import Foundation
import Hummingbird
import Logging
import RPC
import Tokenization

/// Builds the router's HTTP application. The executable and the tests both go through here.
///
/// - Parameters:
///   - configuration: validated here; an invalid value or an unreadable API key file throws.
///   - tokenizer: the served model's tokenizer; prompts are tokenized here, backends see token ids only.
///   - template: the model's chat template, rendered with the tokenizer's BOS/EOS texts; nil for a model
///     without one (`/v1/chat/completions` then answers 400, saying how to give one; `/v1/completions` works).
///   - backend: where generation happens (see ``GenerationBackend`` for its cancellation contract).
///   - apiKeys: overrides `configuration.apiKeysFile` when given (tests); nil loads the file, if any.
///   - metrics: the registry `GET /metrics` serves; pass one to add cluster metrics through its hooks.
///   - cluster: what `/cluster/status` and `/cluster/explain` (and the page's cluster view) read; nil when the
///     backend is not a cluster (they then answer 404).
/// - Returns: an application to `runService()` (or test with HummingbirdTesting).
public func makeRouterApplication(
    configuration: RouterConfiguration,
    tokenizer: Tokenizer,
    template: ChatTemplate?,
    backend: any GenerationBackend,
    apiKeys: APIKeySet? = nil,
    metrics: RouterMetrics = RouterMetrics(),
    cluster: (any ClusterInsight)? = nil,
    logger: Logger = Logger(label: "baton.router")
) throws(RouterError) -> some ApplicationProtocol {
    try configuration.validate()
    let keys: APIKeySet
    if let apiKeys {
        keys = apiKeys
    } else if let path = configuration.apiKeysFile {
        keys = try APIKeySet.load(path: path)
    } else {
        keys = .disabled
    }
    let service = OpenAIService(
        configuration: configuration, tokenizer: tokenizer, template: template, backend: backend, metrics: metrics,
        logger: logger, startedAt: OpenAIService.now)

    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: OpenAIErrorMiddleware(metrics: metrics, logger: logger))
    router.add(middleware: APIKeyMiddleware(keys: keys))
    router.post("/v1/chat/completions") { request, _ in try await service.chatCompletions(request) }
    router.post("/v1/completions") { request, _ in try await service.completions(request) }
    router.get("/v1/models") { _, _ in service.models() }
    router.get("/v1/models/{id}") { _, context in
        try service.model(id: context.parameters.get("id") ?? "")
    }
    router.get("/health") { _, _ in try await service.health() }
    router.get("/metrics") { _, _ in service.metricsExposition() }
    router.post("/tokenize") { request, _ in try await service.tokenize(request) }
    router.post("/detokenize") { request, _ in try await service.detokenize(request) }
    router.get("/cluster/status") { _, _ in try await service.clusterStatus(cluster) }
    router.post("/cluster/explain") { request, _ in try await service.clusterExplain(request, cluster: cluster) }
    RouterPage.register(on: router)

    let idle = configuration.idleConnectionTimeout.components
    let counter = ConnectionCounter(
        maximumConnections: configuration.maximumConnections, maximumPerAddress: configuration.maximumConnectionsPerClient)
    let readTimeout = configuration.requestReadTimeout
    return Application(
        router: router,
        server: .http1(configuration: .init(
            additionalChannelHandlers: [ClientConnectionGuard(counter: counter, requestReadTimeout: readTimeout, logger: logger)],
            idleTimeout: .nanoseconds(idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000))),
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "baton-router"),
        logger: logger)
}

/// Outermost middleware: renders every error as OpenAI error JSON and counts answers by endpoint and status.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: RouterMetrics
    let logger: Logger

    static func endpoint(_ path: String) -> String {
        switch path {
        case "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/tokenize", "/detokenize",
            "/cluster/status", "/cluster/explain":
            path
        case _ where RouterPage.paths.contains(path):
            "page"
        case _ where path.hasPrefix("/v1/models/"):
            "/v1/models/{id}"
        default:
            "other"
        }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let endpoint = Self.endpoint(request.uri.path)
        do {
            let response = try await next(request, context)
            metrics.countRequest(endpoint: endpoint, status: response.status.code)
            return response
        } catch {
            let routerError = RouterError.fromAnyError(error, request: request)
            // Refusals the cluster expects (no worker, overload, timeout) are warnings; a 500 is a bug or a failure.
            if routerError.code.httpStatus == 500 {
                logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(routerError)"])
            } else if request.uri.path == "/health" {
                // Polled by supervisors while the cluster starts: not worth a warning each time.
                logger.debug("not ready", metadata: ["error": "\(routerError)"])
            } else if routerError.code.httpStatus > 500 || routerError.code.httpStatus == 429 {
                logger.warning("request refused", metadata: ["path": "\(request.uri.path)", "error": "\(routerError)"])
            }
            metrics.countRequest(endpoint: endpoint, status: routerError.code.httpStatus)
            return routerError.openAIResponse()
        }
    }
}

/// Requires `Authorization: Bearer <key>` on the API when keys are configured; `/health` and `/metrics` stay open
/// for probes and scrapers, and the page's files for browsers (the page asks for a key when the API wants one).
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: APIKeySet

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard keys.isEnabled, path != "/health", path != "/metrics", !RouterPage.paths.contains(path) else {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            throw RouterError(
                .invalidAPIKey,
                "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
                    + "(i.e. Authorization: Bearer YOUR_KEY).")
        }
        guard keys.accepts(authorization: header) else {
            throw RouterError(.invalidAPIKey, "Incorrect API key provided.")
        }
        return try await next(request, context)
    }
}
