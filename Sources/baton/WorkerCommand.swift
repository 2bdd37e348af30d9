import ArgumentParser
import Cluster
import Dispatch
import Foundation
import GGUF
import Inference
import KVTransport
import Logging
import Placement
import ServiceLifecycle
import Tokenization
import Worker

/// `baton worker`: a prefill, decode or combined worker of the cluster. Loads only the engines its role
/// needs, serves the worker control routes and KV transfers on one mutual-TLS listener, registers with the
/// placement service and heartbeats its load; SIGTERM drains it.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a prefill, decode or combined worker of a Baton cluster.",
        discussion: """
            Prints one JSON line {"listening": PORT, "name": NAME} on standard output once it serves.
            SIGTERM (or SIGINT) drains: new requests are refused with 503; a decode worker moves the generations \
            it runs, with their KV, to other decode workers that have room (each waits at most --move-timeout \
            seconds for its router to move it), and requests nobody takes finish here (at most --drain-timeout \
            seconds); the worker leaves the placement service and exits 0.
              baton certs --out certs --nodes placement,prefill-0,decode-0
              baton worker --role decode --placement 127.0.0.1:7400 --listen 127.0.0.1:7411 \\
                  --certs certs --node decode-0
            """)

    enum Role: String, ExpressibleByArgument, CaseIterable {
        case prefill, decode, both

        init(roles: [WorkerRole]) {
            let set = Set(roles)
            self = set == [.prefill] ? .prefill : set == [.decode] ? .decode : .both
        }

        var roles: [WorkerRole] {
            switch self {
            case .prefill: [.prefill]
            case .decode: [.decode]
            case .both: [.decode, .prefill]
            }
        }
    }

    @Option(name: .long, help: "prefill, decode or both (default: the config's role, else both).")
    var role: Role?
    @Option(name: .long, help: "HOST:PORT of the placement service (an https:// or http:// prefix is ignored).")
    var placement: String
    @Option(name: .long, help: "HOST:PORT to serve control requests and KV transfers on (port 0: any free port).")
    var listen: String = "127.0.0.1:7410"
    @Option(name: .long, help: "HOST:PORT peers reach this worker at (default: the listen address).")
    var advertise: String?
    /// `--certs DIR --node NAME` or `--insecure`; the node name is also the worker's unless --config names it.
    @OptionGroup var nodeTLS: NodeTLSOptions
    @OptionGroup var listener: NodeListenerOptions
    @Option(name: .long, help: "Worker config (YAML): name, threads, labels, declared profile, profile cache.")
    var config: String?
    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Compute threads per engine (default: the config's, else all cores).")
    var threads: Int?
    @Option(name: .customLong("kv-blocks"), help: "KV cache blocks (default: --max-batch full contexts for decode; for prefill one, whose queued prompts share it, or --max-batch with prefix caching, for the prefixes it keeps).")
    var kvBlocks: Int?
    @Option(name: .long, help: "Most sequences per decode step.")
    var maxBatch: Int = 8
    @Option(name: .long, help: "Most tokens per sequence, prompt and completion (capped at the model's).")
    var context: Int = 2048
    @Option(name: .long, help: "Seconds SIGTERM waits for requests in flight before leaving anyway.")
    var drainTimeout: Double = 30
    @Option(name: .customLong("move-timeout"), help: "Draining decode worker: seconds each generation waits for its router to move it (KV and all) to another decode worker, and the most that transfer may take, before it finishes here instead. 0: no moves.")
    var moveTimeout: Double = 10
    @Option(name: .customLong("kv-start-timeout"), help: "The most seconds an OpenDecode may ask to wait for its KV to start arriving (the router asks for its prefill deadline); a request asking more is refused, and a reservation nobody feeds is freed after what it asked.")
    var kvStartTimeout: Double = 600
    @Option(name: .customLong("peer-kv-share"), help: "Share (0-1] of this decode worker's KV blocks one peer's reservations may hold while waiting for KV.")
    var peerKVShare: Double = 1
    @Flag(name: .customLong("no-prefix-caching"), help: "Compute every prompt from its first token instead of reusing the longest prefix of it this worker's KV cache still holds.")
    var noPrefixCaching = false

    func validate() throws {
        _ = try Endpoint.parse(placement, option: "--placement")
        _ = try Endpoint.parse(listen, option: "--listen")
        if let advertise { _ = try Endpoint.parse(advertise, option: "--advertise") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let kvBlocks, kvBlocks < 1 { throw ValidationError("--kv-blocks must be at least 1") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard context >= 2 else { throw ValidationError("--context must be at least 2") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be 0 or more") }
        guard moveTimeout >= 0, moveTimeout <= 600 else { throw ValidationError("--move-timeout must be in [0, 600] seconds") }
        guard kvStartTimeout > 0, kvStartTimeout <= 3600 else { throw ValidationError("--kv-start-timeout must be in (0, 3600] seconds") }
        guard peerKVShare > 0, peerKVShare <= 1 else { throw ValidationError("--peer-kv-share must be in (0, 1]") }
    }

    func run() async throws {
        ParentWatch.exitWithParentIfAsked()
        let logger = KVHandoffCommand.logger("baton.worker")
        let (listenHost, listenPort) = try Endpoint.parse(listen, option: "--listen")
        let placementEndpoint = try Endpoint.parse(placement, option: "--placement")
        let workerConfig: WorkerConfig?
        do { workerConfig = try config.map { try WorkerConfig.load(path: $0) } } catch {
            throw ValidationError("\(error)")
        }
        guard let name = workerConfig?.name ?? nodeTLS.node else {
            throw ValidationError("name the worker: --node NAME, or `name:` in --config")
        }
        let threads = self.threads ?? workerConfig?.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let role = self.role ?? workerConfig.map { Role(roles: $0.roles) } ?? .both
        if let declared = workerConfig?.roles, Set(declared) != Set(role.roles) {
            logger.warning("--role \(role.rawValue) overrides the config's role \(declared.map(\.rawValue).sorted())")
        }

        // Measured before the engines exist: the probes use BLAS and all the threads.
        var profileConfig = workerConfig ?? WorkerConfig(name: name)
        profileConfig.name = name
        profileConfig.roles = role.roles
        profileConfig.threads = threads
        let profiled: DeviceProfiler.Result
        do { profiled = try DeviceProfiler.profile(for: profileConfig) } catch {
            throw CommandFailure("cannot profile this machine: \(error)")
        }
        logger.info("device profile (\(profiled.source.rawValue)): \(profiled.profile.summary)")

        let (file, tokenizer) = try GenerateCommand.open(try modelOptions.resolvedPath())
        let model = try TransformerModel(file: file)
        // A declared `host_id` is this worker's host for the KV transport too (not only for placement): two
        // workers that declare different ones must not pick shared memory, whatever their host names say.
        var transport = KVTransportConfiguration(
            tls: try nodeTLS.tls(), policy: KVTransportPolicy(insecure: nodeTLS.insecure),
            hostID: workerConfig?.declaredProfile.sharedMemoryHostID ?? KVTransportConfiguration.defaultHostID())
        transport.discoverRDMA(logger: logger)
        transport.listenerLimits = listener.limits

        var settings = WorkerNode.Configuration(
            name: name, roles: Set(role.roles), threads: threads, context: context, listenHost: listenHost,
            listenPort: listenPort, transport: transport)
        settings.maxBatch = maxBatch
        settings.kvBlocks = kvBlocks
        settings.advertise = try advertise.map { try Endpoint.parse($0, option: "--advertise") }
        settings.placement = placementEndpoint
        settings.profile = profiled.profile
        settings.drainTimeout = .milliseconds(Int(drainTimeout * 1000))
        settings.moveTimeout = .milliseconds(Int(moveTimeout * 1000))
        settings.maximumTransferTimeout = .milliseconds(Int(kvStartTimeout * 1000))
        settings.peerKVShare = peerKVShare
        settings.prefixCaching = !noPrefixCaching
        let node = try await WorkerNode(model: model, tokenizer: tokenizer, configuration: settings, logger: logger)
        KVHandoffCommand.emit(["listening": node.port, "name": name])
        logger.info("worker \(name) (\(role.rawValue)) serving on \(listenHost):\(node.port), \(nodeTLS.insecure ? "plaintext, insecure" : "mutual TLS"); placement at \(placement)")
        try await ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }
}
