import ArgumentParser
import ClusterProtocol
import Dispatch
import Foundation
import GGUF
import Generation
import Inference
import KVTransport
import Logging
import RPC
import ServiceLifecycle
import Tokenization
import Worker

/// `baton kv-handoff`: a two-process prefill → decode hand-off, for development and the integration tests, on the
/// path a cluster takes: the decode side is a decode worker on its own (no placement), the prefill side does what a
/// router and a prefill worker do together — opens the generation on the decode worker, prefills the prompt here
/// and streams its KV and last logits there, then reads the decode worker's tokens.
struct KVHandoffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-handoff",
        abstract: "Development: prefill in one process, stream its KV layer by layer to a decode worker, decode there.",
        discussion: """
            Start the decode side, then one prefill per request:
              baton certs --out certs --nodes prefill:prefill+router,decode
              baton kv-handoff decode --listen 127.0.0.1:7450 --certs certs --node decode --requests 1
              baton kv-handoff prefill --connect 127.0.0.1:7450 --certs certs --node prefill \\
                  --prompt "Once upon a time" --max-tokens 32 --seed 1 --temperature 0
            The prefill side prints one JSON line with the tokens and text the decode worker generated: the same as \
            `baton generate` with the same prompt and sampling flags.
            """,
        shouldDisplay: false,
        subcommands: [Decode.self, Prefill.self])

    /// Transport flags shared by both sides.
    struct TransportOptions: ParsableArguments {
        @OptionGroup var identity: NodeTLSOptions
        @Option(name: .long, help: "Seconds any network wait may last (connect, handshake, each read and write).")
        var timeout: Double = 10

        func validate() throws {
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        /// The transport settings, with RDMA devices discovered (and the result logged).
        func configuration(allowSharedMemory: Bool, allowRDMA: Bool = true, logger: Logger) throws -> KVTransportConfiguration {
            var configuration = KVTransportConfiguration(
                tls: try identity.tls(),
                policy: KVTransportPolicy(allowRDMA: allowRDMA, allowSharedMemory: allowSharedMemory, insecure: identity.insecure))
            configuration.idleTimeout = .milliseconds(Int(timeout * 1000))
            configuration.connectTimeout = .milliseconds(Int(timeout * 1000))
            configuration.discoverRDMA(logger: logger)
            return configuration
        }
    }

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .info
        return logger
    }

    /// One JSON object on one line of standard output, flushed (a pipe would otherwise hold it back).
    static func emit(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }

    static func loadModel(_ options: ModelOptions) throws -> (TransformerModel, Tokenizer) {
        let (file, tokenizer) = try GenerateCommand.open(try options.resolvedPath())
        return (try TransformerModel(file: file), tokenizer)
    }
}

extension KVHandoffCommand {
    /// The decode side: a decode worker without placement.
    struct Decode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode",
            abstract: "A decode worker on its own: takes OpenDecode requests and their KV; exits after --requests.")

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var transport: TransportOptions
        @Option(name: .long, help: "HOST:PORT to listen on (port 0: any free port, printed first as {\"listening\": PORT}).")
        var listen: String
        @Option(name: .long, help: "Exit after this many generations ended (0: run until SIGTERM).")
        var requests: Int = 0
        @Option(name: .long, help: "Highest prompt + completion length.")
        var context: Int = 2048
        @Option(name: .long, help: "Worker threads (default: all cores).")
        var threads: Int = ProcessInfo.processInfo.activeProcessorCount
        @Option(name: .long, help: "Exit with an error when no generation ends for this many seconds (0: never).")
        var idleExit: Double = 0

        func validate() throws {
            _ = try Endpoint.parse(listen, option: "--listen")
            guard requests >= 0 else { throw ValidationError("--requests must be 0 or more") }
            guard context >= 2 else { throw ValidationError("--context must be at least 2") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            guard idleExit >= 0 else { throw ValidationError("--idle-exit must be 0 or more") }
        }

        func run() async throws {
            let (host, port) = try Endpoint.parse(listen, option: "--listen")
            let (model, tokenizer) = try KVHandoffCommand.loadModel(modelOptions)
            let logger = KVHandoffCommand.logger("baton.kv-handoff.decode")
            var settings = WorkerNode.Configuration(
                name: transport.identity.node ?? "decode", roles: [.decode], threads: threads, context: context,
                listenHost: host, listenPort: port, transport: try transport.configuration(allowSharedMemory: true, logger: logger))
            settings.maxBatch = 2
            let node = try await WorkerNode(model: model, tokenizer: tokenizer, configuration: settings, logger: logger)
            KVHandoffCommand.emit(["listening": node.port])
            logger.info("decode worker listening on \(host):\(node.port) (\(transport.identity.insecure ? "plaintext, insecure" : "mutual TLS"))")
            let group = ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            let scheduler = node.scheduler!
            let idleExit = self.idleExit, requests = self.requests
            // Ends the group once `requests` generations ended, or when none ended for `idleExit` seconds.
            let watcher = Task {
                var last = ContinuousClock.now, seen = 0
                while !Task.isCancelled {
                    let load = scheduler.load
                    let ended = load.finished + load.cancelled + load.failed
                    if ended != seen { (seen, last) = (ended, .now) }
                    if requests > 0 && ended >= requests { break }
                    if idleExit > 0 && last.duration(to: .now) > .milliseconds(Int(idleExit * 1000)) { return true }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                await group.triggerGracefulShutdown()
                return false
            }
            try await group.run()
            watcher.cancel()
            if await watcher.value {
                GenerateCommand.log("error: no generation ended for \(idleExit) s; exiting")
                throw ExitCode(3)
            }
            if scheduler.load.failed > 0 { throw ExitCode(2) }
        }
    }

    /// The prefill side: opens the generation on the decode worker, prefills here and ships the KV, prints what the
    /// decode worker generated.
    struct Prefill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prefill",
            abstract: "Prefill a prompt, stream its KV to a decode worker and print what it generates (one JSON line).")

        enum TransportChoice: String, ExpressibleByArgument, CaseIterable {
            case auto, tls, shm, rdma
        }

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var transport: TransportOptions
        @Option(name: .long, help: "HOST:PORT of the decode side.")
        var connect: String
        @Option(name: .long, help: "Raw prompt, completed as is (no chat template).")
        var prompt: String
        @Option(
            name: .customLong("transport"),
            help: "Transport: auto (shared memory on one host, else RDMA where both ends have a device, else TLS), tls, shm (must be shared memory) or rdma (must be RDMA).")
        var via: TransportChoice = .auto
        @Option(name: .long, help: "Request id (default: prefill-PID).")
        var requestID: String?
        @OptionGroup var sampling: GenerateCommand.SamplingOptions

        func validate() throws {
            _ = try Endpoint.parse(connect, option: "--connect")
        }

        func run() async throws {
            let (host, port) = try Endpoint.parse(connect, option: "--connect")
            let (model, tokenizer) = try KVHandoffCommand.loadModel(modelOptions)
            let tokens = tokenizer.encodePrompt(prompt)
            let contextLength = min(tokens.count + sampling.maxTokens, model.configuration.contextLength)
            let requestID = self.requestID ?? "prefill-\(getpid())"
            let state: GenerationState
            do {
                state = GenerationState(
                    request: try GenerationRequest(
                        id: requestID, prompt: tokens, maxNewTokens: sampling.maxTokens, sampling: sampling.parameters()
                    ).validated(vocabularySize: tokenizer.vocabularySize, contextLength: contextLength))
            } catch {
                throw ValidationError(error.message)
            }
            let layout = model.kvCacheLayout()
            let engine = try PrefillEngine(
                model: model, cache: try PagedKVCache(layout: layout, blockCount: layout.blocks(forTokens: contextLength) + 1),
                threads: sampling.threads, maxContext: contextLength)
            let shipper = try PrefillKVShipper(
                engine: engine, identity: KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout))
            let logger = KVHandoffCommand.logger("baton.kv-handoff.prefill")
            let configuration = try transport.configuration(
                allowSharedMemory: via == .auto || via == .shm, allowRDMA: via == .auto || via == .rdma, logger: logger)

            // As a router: open the generation on the decode worker (it reserves room and answers `opened`).
            // (so this node's certificate needs both the router and the prefill role).
            let control = try await NodeClient.connect(
                host: host, port: port, tls: configuration.tls, expecting: .role(.decode),
                insecure: configuration.policy.insecure, connectTimeout: configuration.connectTimeout)
            var open = Baton_V1_OpenDecodeRequest()
            open.state = state.proto
            if let tls = configuration.tls { open.prefillWorker = try tls.identity().name }
            let opened = try await control.stream(
                BatonProtocol.WorkerControl.openDecode, body: try open.serializedBytes(), idleTimeout: configuration.idleTimeout * 6)
            guard opened.status == 200 else {
                throw CommandFailure("the decode worker refused the generation: \(String(decoding: opened.body, as: UTF8.self))")
            }
            var events = opened.messages.makeAsyncIterator()
            guard let first = try await events.next(), case .opened(let event) = try Baton_V1_DecodeEvent(serializedBytes: first).event
            else {
                throw CommandFailure("the decode worker did not open the generation")
            }
            // As a prefill worker: prefill here, stream the KV and the last logits there.
            let client = try await KVTransferClient.connect(host: host, port: port, configuration: configuration, logger: logger)
            let report: KVShipmentReport
            do {
                // Only what the decode worker's prefix cache does not hold travels.
                report = try await shipper.ship(
                    requestID: requestID, prompt: tokens, receiverHolds: Int(event.cachedPromptTokens), via: client)
            } catch {
                opened.cancel()
                await client.close()
                throw CommandFailure("\(error)")
            }
            await client.close()
            // And read what the decode worker generates.
            var text = CompletionText(tokenizer: tokenizer, stopStrings: sampling.stop)
            var generated: [Int32] = [], output = "", reason = "", failure: String?
            while let bytes = try await events.next() {
                switch try Baton_V1_DecodeEvent(serializedBytes: bytes).event {
                case .token(let token):
                    generated.append(token.token)
                    output += text.append(token.token)
                case .finished(let finished):
                    output += text.finish()
                    reason = try FinishReason(proto: finished.reason).openAIValue
                case .failure(let error):
                    failure = error.message
                default:
                    continue
                }
                if text.stopped {
                    opened.cancel()
                    reason = FinishReason.stopString.openAIValue
                    break
                }
            }
            await control.close()
            if let failure { throw CommandFailure("the decode worker failed: \(failure)") }
            KVHandoffCommand.emit([
                "request_id": requestID, "prompt_tokens": report.promptTokens, "tokens": generated.map { Int($0) },
                "text": output, "finish_reason": reason, "seed": String(state.request.sampling.seed ?? 0),
                "transport": report.transfer.transport.name, "bytes": report.transfer.bytes,
                "decode_cached_tokens": report.receiverCachedTokens, "bytes_not_sent": report.bytesNotSent,
                "prefill_ms": report.prefillSeconds * 1000, "total_ms": report.totalSeconds * 1000,
            ])
            if (via == .shm && report.transfer.transport != .sharedMemory) || (via == .rdma && report.transfer.transport != .rdma) {
                throw CommandFailure("--transport \(via.rawValue), but the transfer went over \(report.transfer.transport.name)")
            }
        }
    }
}
