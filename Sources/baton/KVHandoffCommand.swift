import ArgumentParser
import Dispatch
import Foundation
import GGUF
import Inference
import KVTransport
import Logging
import Tokenization
import Worker

/// `baton kv-handoff`: a two-process prefill → decode hand-off, for development and the integration tests.
/// (The cluster's workers do this behind `baton worker`; these commands expose the bare mechanism.)
struct KVHandoffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-handoff",
        abstract: "Development: prefill in one process, stream its KV layer by layer to another, decode there.",
        discussion: """
            Start the decode side, then one prefill per request:
              baton certs --out certs --nodes prefill,decode
              baton kv-handoff decode --listen 127.0.0.1:7450 --certs certs --node decode --requests 1
              baton kv-handoff prefill --connect 127.0.0.1:7450 --certs certs --node prefill \\
                  --prompt "Once upon a time" --max-tokens 32 --seed 1 --temperature 0
            The decode side prints one JSON line per request with the tokens and text it generated: the same as
            `baton generate` with the same prompt and sampling flags (for prompts long enough that generate takes
            its prefill path, 48 tokens or more).
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

    static func loadModel(_ options: ModelOptions) throws -> (LlamaModel, Tokenizer) {
        let (file, tokenizer) = try GenerateCommand.open(try options.resolvedPath())
        return (try LlamaModel(file: file), tokenizer)
    }
}

extension KVHandoffCommand {
    /// The decode side: listens for KV, decodes each received sequence, prints the result.
    struct Decode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode",
            abstract: "Receive sequences' KV and decode them; one JSON line per request on standard output.")

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var transport: TransportOptions
        @Option(name: .long, help: "HOST:PORT to listen on (port 0: any free port, printed first as {\"listening\": PORT}).")
        var listen: String
        @Option(name: .long, help: "Exit after this many requests finished or failed (0: run until SIGTERM).")
        var requests: Int = 0
        @Option(name: .long, help: "Highest prompt + completion length.")
        var context: Int = 2048
        @Option(name: .long, help: "Worker threads (default: all cores).")
        var threads: Int = ProcessInfo.processInfo.activeProcessorCount
        @Option(name: .long, help: "Exit with an error when no request arrives for this many seconds (0: never).")
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
            let layout = model.kvCacheLayout()
            let contextLength = min(context, model.configuration.contextLength)
            let cache = try PagedKVCache(layout: layout, blockCount: 2 * ((contextLength + layout.blockSize - 1) / layout.blockSize))
            let engine = try DecodeEngine(model: model, cache: cache, threads: threads, maxBatch: 1, maxContext: contextLength)
            let identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
            let receiver = try DecodeKVReceiver(engine: engine, tokenizer: tokenizer, identity: identity)
            let logger = KVHandoffCommand.logger("baton.kv-handoff.decode")
            let server = try await KVTransferServer.bind(
                host: host, port: port, configuration: try transport.configuration(allowSharedMemory: true, logger: logger),
                identity: identity, receiver: receiver, logger: logger)
            KVHandoffCommand.emit(["listening": server.port])
            logger.info("decode side listening on \(host):\(server.port) (\(transport.identity.insecure ? "plaintext, insecure" : "mutual TLS"))")

            signal(SIGTERM, SIG_IGN)
            let terminate = DispatchSource.makeSignalSource(signal: SIGTERM)
            terminate.setEventHandler { receiver.finishEvents() }
            terminate.resume()
            let serving = Task { await server.run() }
            var handled = 0
            var failed = 0
            let watchdog = IdleWatchdog(seconds: idleExit) { receiver.finishEvents() }
            for await event in receiver.events {
                watchdog.touch()
                switch event {
                case .firstToken:
                    continue
                case .finished(let result):
                    KVHandoffCommand.emit([
                        "request_id": result.requestID, "prompt_tokens": result.promptTokens,
                        "tokens": result.tokens.map { Int($0) }, "text": result.text,
                        "finish_reason": result.finishReason.openAIName, "seed": String(result.seed),
                        "transport": result.transport.rawValue,
                    ])
                case .failed(let requestID, let error):
                    failed += 1
                    KVHandoffCommand.emit(["request_id": requestID, "error": error.description])
                }
                handled += 1
                if requests > 0 && handled >= requests { break }
            }
            terminate.cancel()
            watchdog.cancel()
            await server.close()
            serving.cancel()
            if watchdog.fired {
                GenerateCommand.log("error: no request for \(idleExit) s; exiting")
                throw ExitCode(3)
            }
            if failed > 0 { throw ExitCode(2) }
        }
    }

    /// The prefill side: prefills one prompt and streams its KV to the decode side.
    struct Prefill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prefill",
            abstract: "Prefill a prompt and stream its KV to a decode process; prints a JSON report line.")

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
            let tokens = tokenizer.encode(prompt, addSpecial: true, parseSpecial: false)
            guard !tokens.isEmpty else { throw ValidationError("the prompt is empty") }
            let layout = model.kvCacheLayout()
            let contextLength = min(tokens.count + sampling.maxTokens, model.configuration.contextLength)
            guard tokens.count < contextLength else {
                throw ValidationError("the prompt has \(tokens.count) tokens; the model's context holds \(model.configuration.contextLength)")
            }
            let cache = try PagedKVCache(layout: layout, blockCount: (contextLength + layout.blockSize - 1) / layout.blockSize + 1)
            let engine = try PrefillEngine(model: model, cache: cache, threads: sampling.threads, maxContext: contextLength)
            let identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
            let shipper = try PrefillKVShipper(engine: engine, identity: identity)
            let logger = KVHandoffCommand.logger("baton.kv-handoff.prefill")
            let configuration = try transport.configuration(
                allowSharedMemory: via == .auto || via == .shm, allowRDMA: via == .auto || via == .rdma, logger: logger)
            let client = try await KVTransferClient.connect(host: host, port: port, configuration: configuration, logger: logger)
            let requestID = self.requestID ?? "prefill-\(getpid())"
            let report: KVShipmentReport
            do {
                report = try await shipper.ship(requestID: requestID, prompt: tokens, parameters: sampling.parameters, via: client)
            } catch {
                await client.close()
                GenerateCommand.log("error: \(error)")
                throw ExitCode(1)
            }
            await client.close()
            KVHandoffCommand.emit([
                "request_id": requestID, "prompt_tokens": report.promptTokens, "first_token": Int(report.firstToken),
                "seed": String(report.seed), "transport": report.transfer.transport.rawValue, "bytes": report.transfer.bytes,
                "prefill_ms": report.prefillSeconds * 1000, "total_ms": report.totalSeconds * 1000,
            ])
            if (via == .shm && report.transfer.transport != .sharedMemory) || (via == .rdma && report.transfer.transport != .rdma) {
                GenerateCommand.log("error: --transport \(via.rawValue), but the transfer went over \(report.transfer.transport.rawValue)")
                throw ExitCode(1)
            }
        }
    }
}

/// Calls `onFire` once when `touch` has not been called for `seconds` (never when `seconds` is 0).
final class IdleWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var last = ContinuousClock.now
    private var done = false
    private(set) var fired = false
    private var timer: DispatchSourceTimer?

    init(seconds: Double, onFire: @escaping @Sendable () -> Void) {
        guard seconds > 0 else { return }
        let timer = DispatchSource.makeTimerSource()
        timer.schedule(deadline: .now() + 0.25, repeating: 0.25)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            let fire: Bool = self.lock.withLock {
                guard !self.done, self.last.duration(to: .now) > .milliseconds(Int(seconds * 1000)) else { return false }
                self.done = true
                self.fired = true
                return true
            }
            if fire { onFire() }
        }
        timer.resume()
        self.timer = timer
    }

    func touch() { lock.withLock { last = .now } }

    func cancel() {
        lock.withLock { done = true }
        timer?.cancel()
    }
}
