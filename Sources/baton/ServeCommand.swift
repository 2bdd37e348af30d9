import ArgumentParser
import ChatTemplates
import Foundation
import GGUF
import Hummingbird
import Inference
import Logging
import Router
import ServiceLifecycle
import Tokenization
import Worker

/// `baton serve`: the OpenAI-compatible API and the one token loop in one process — the single-box mode, before
/// any disaggregation. Prompts run on the prefill (sgemm) path; generation for all requests is batched on the
/// decode (quantized) path.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the OpenAI API from this process (router and both engines, no disaggregation)."
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var chatTemplate: ChatTemplateOptions
    @OptionGroup var listenerOptions: APIListenerOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on.")
    var port = 8080
    @Option(help: "Engine threads (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(name: .customLong("context"), help: "Tokens per request, prompt and reply (default: 4096, at most the model's).")
    var contextLength = 4096
    @Option(name: .customLong("max-batch"), help: "Most requests generating in one decode step.")
    var maxBatch = 8
    @Option(name: .customLong("kv-blocks"), help: "KV cache blocks of 16 tokens shared by all requests (default: room for max-batch full contexts).")
    var kvBlocks: Int?
    @Option(name: [.customLong("served-model-name"), .customLong("model-id")], help: "Model id shown by /v1/models and accepted in requests, as vLLM's --served-model-name (default: the file name without .gguf).")
    var modelID: String?
    @Option(name: .customLong("api-keys"), help: "File of accepted bearer API keys, one per line ('#' comments). Without it no key is needed.")
    var apiKeysFile: String?
    @Flag(name: .customLong("no-prefix-caching"), help: "Compute every prompt from its first token instead of reusing the longest prefix of it the KV cache still holds.")
    var noPrefixCaching = false

    func validate() throws {
        guard contextLength >= 16 else { throw ValidationError("--context must be at least 16, got \(contextLength)") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1, got \(maxBatch)") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let kvBlocks, kvBlocks < 1 { throw ValidationError("--kv-blocks must be at least 1") }
    }

    func run() async throws {
        var logger = Logger(label: "baton.serve")
        logger.logLevel = .info
        let path = try modelOptions.resolvedPath()
        let (file, tokenizer) = try GenerateCommand.open(path)
        let template = try ChatPrompt.template(file: file, templateFile: try chatTemplate.resolvedFile())
        let model = try TransformerModel(file: file)
        let context = min(contextLength, model.configuration.contextLength)
        let contextBlocks = model.kvCacheLayout().blocks(forTokens: context)
        let blocks = kvBlocks ?? maxBatch * contextBlocks
        guard blocks >= contextBlocks else {
            throw ValidationError("--kv-blocks \(blocks) cannot hold one full context of \(context) tokens (\(contextBlocks) blocks)")
        }
        var settings = DecodeScheduler.Configuration(kvBlocks: blocks, maxBatch: maxBatch, threads: threads, maxContext: context)
        settings.prefixCaching = !noPrefixCaching
        let scheduler = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: settings)
        let id = modelID ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        var configuration = RouterConfiguration(host: host, port: port, modelID: id, contextLength: context, apiKeysFile: apiKeysFile)
        listenerOptions.apply(to: &configuration)
        let app = try makeRouterApplication(
            configuration: configuration,
            tokenizer: tokenizer, template: template, backend: scheduler, logger: Logger(label: "baton.router"))
        logger.info("serving \(id) at http://\(host):\(port)/v1 (\(threads) threads, context \(context), \(blocks) KV blocks)")
        try await ServiceGroup(
            services: [SchedulerService(scheduler), app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        ).run()
    }
}
