import ArgumentParser
import Cluster
import Foundation
import GGUF
import Hummingbird
import Inference
import Logging
import Prometheus
import RPC
import Router
import ServiceLifecycle
import Tokenization

/// `baton router`: the OpenAI-compatible API in front of a cluster. It tokenizes and renders the chat
/// template itself; each request then goes to the prefill/decode pair placement picks, over mutual TLS.
struct RouterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Serve the OpenAI API, splitting each request between a prefill and a decode worker.",
        discussion: """
            Needs a running placement service and workers (see `baton up` for all of it on one box):
              baton router --placement 10.0.0.1:7400 --certs /etc/baton/certs --node router --port 8080
            The model file is read for its tokenizer and chat template only; it must be the workers' model.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var chatTemplate: ChatTemplateOptions
    @OptionGroup var tlsOptions: NodeTLSOptions
    @OptionGroup var placementOptions: PlacementAddressOptions
    @OptionGroup var listenerOptions: APIListenerOptions

    @Option(help: "Address to listen on for API clients.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on for API clients.")
    var port = 8080

    @Option(name: .customLong("context"), help: "Tokens per request, prompt and reply (default 4096, at most the model's). Must not exceed the workers' --context.")
    var contextLength = 4096

    @Option(name: [.customLong("served-model-name"), .customLong("model-id")], help: "Model id shown by /v1/models and accepted in requests, as vLLM's --served-model-name (default: the file name without .gguf).")
    var servedModelName: String?

    @Option(name: .customLong("api-keys"), help: "File of accepted bearer API keys, one per line ('#' comments). Without it no key is needed.")
    var apiKeysFile: String?

    @Option(help: "Seconds to wait for placement or a worker to answer a control request.")
    var timeout: Double = 5

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        guard contextLength >= 16 else { throw ValidationError("--context must be at least 16, got \(contextLength)") }
    }

    func run() async throws {
        ParentWatch.exitWithParentIfAsked()
        var logger = Logger(label: "baton.router")
        logger.logLevel = .info
        let path = try modelOptions.resolvedPath()
        let (file, tokenizer) = try GenerateCommand.open(path)
        let template = try ChatPrompt.template(file: file, templateFile: try chatTemplate.resolvedFile())
        let modelContext = try ModelConfiguration(gguf: file).contextLength
        let context = min(contextLength, modelContext)

        let tls = try tlsOptions.tls()
        let (placementHost, placementPort) = try placementOptions.endpoint()
        let requestTimeout = Duration.milliseconds(Int(timeout * 1000))
        let placement = PlacementClient(
            host: placementHost, port: placementPort, tls: tls, insecure: tlsOptions.insecure, timeout: requestTimeout)
        let workers = NodeClientPool(tls: tls, insecure: tlsOptions.insecure, connectTimeout: requestTimeout)
        let metrics = RouterMetrics()
        // The cluster backend reports per-worker figures through swift-metrics: into the same registry.
        let backend = ClusterGenerationBackend(
            placement: placement, workers: workers, metrics: PrometheusMetricsFactory(registry: metrics.registry),
            logger: Logger(label: "baton.router.cluster"))

        let id = servedModelName ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        var configuration = RouterConfiguration(
            host: host, port: port, modelID: id, contextLength: context, apiKeysFile: apiKeysFile)
        listenerOptions.apply(to: &configuration)
        let app = try makeRouterApplication(
            configuration: configuration, tokenizer: tokenizer, template: template, backend: backend,
            metrics: metrics, cluster: PlacementInsight(placement: placement), logger: logger)
        logger.info("serving \(id) at http://\(host):\(port)/v1 through placement at \(placementHost):\(placementPort) (\(tls == nil ? "plaintext, insecure" : "mutual TLS"))")
        let watcher = Task { await backend.run() }
        defer { watcher.cancel() }
        try await ServiceGroup(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
        await workers.closeAll()
        await placement.close()
    }
}
