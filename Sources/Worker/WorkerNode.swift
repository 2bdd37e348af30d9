import Cluster
import Foundation
import Inference
import KVTransport
import Logging
import Placement
import RPC
import ServiceLifecycle
import Tokenization

/// One worker, assembled from its configuration: the engines its roles need (a `DecodeScheduler` for decode, a
/// `PrefillService` for prefill), the control routes and KV transfers on one listener, and — when it belongs to
/// a cluster — its registration and heartbeats with the placement service. `baton worker`, the workers `baton up`
/// runs, `baton kv-handoff` and the tests all build workers through this one type.
///
/// A `Service`: `run` serves until graceful shutdown (SIGTERM under a `ServiceGroup`), then drains — new
/// requests are refused with 503; a decode worker moves the generations it runs to other decode workers with their
/// KV (`moveTimeout`; see `DecodeMover`) and finishes those nobody takes; at most `drainTimeout` — leaves the
/// placement service and returns.
public final class WorkerNode: Service, Sendable {
    /// Everything a worker is, with the defaults `baton worker` uses.
    public struct Configuration: Sendable {
        public var name: String
        /// `.prefill`, `.decode` or both.
        public var roles: Set<WorkerRole>
        /// Compute threads per engine.
        public var threads: Int
        /// Most tokens per sequence, prompt and completion (capped at the model's).
        public var context: Int
        /// Most sequences per decode step.
        public var maxBatch: Int = 8
        /// KV blocks: for a decode worker its scheduler's (default room for `maxBatch` full contexts), for a
        /// prefill-only worker the prefill cache's (default one full context; with prefix caching, `maxBatch` of
        /// them: what the prompts of that many conversations leave cached, committed by the OS only as it fills).
        public var kvBlocks: Int?
        public var listenHost: String
        /// 0: any free port (`WorkerNode.port` tells which).
        public var listenPort: Int
        /// Where peers reach this worker (default: the listen address; required when listening on all interfaces).
        public var advertise: (host: String, port: Int)?
        public var transport: KVTransportConfiguration
        /// The placement service to register with; nil for a worker on its own (kv-handoff, tests).
        public var placement: (host: String, port: Int)?
        /// Registered with placement (required with `placement`).
        public var profile: DeviceProfile?
        /// How long SIGTERM waits for requests in flight.
        public var drainTimeout: Duration = .seconds(30)
        /// Draining decode worker: how long each generation it pauses waits for its router to move it elsewhere
        /// (and the most its KV transfer may take) before it goes on here. Zero: no moves, every generation
        /// finishes here.
        public var moveTimeout: Duration = .seconds(10)
        /// How long an `OpenDecode` waiting for KV keeps its room when the request names no bound.
        public var transferTimeout: Duration = .seconds(30)
        /// The longest an `OpenDecode` may ask to wait for its KV to start arriving (a request naming more is
        /// refused): what bounds a reservation nobody feeds.
        public var maximumTransferTimeout: Duration = .seconds(600)
        /// The share of the decode worker's KV blocks one peer's reservations may hold while waiting for KV.
        public var peerKVShare = 1.0
        /// Generations that may wait for room on the decode scheduler before new ones are refused (`NO_ROOM`).
        public var maxQueued = 256
        /// Whether prompts start from the longest prefix of them this worker's cache still holds (see
        /// `DecodeScheduler.Configuration.prefixCaching`; the prefill queue reuses whole blocks the same way).
        public var prefixCaching = true

        public init(
            name: String, roles: Set<WorkerRole>, threads: Int, context: Int, listenHost: String, listenPort: Int,
            transport: KVTransportConfiguration
        ) {
            self.name = name
            self.roles = roles
            self.threads = threads
            self.context = context
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.transport = transport
        }
    }

    public let configuration: Configuration
    public let identity: KVCompatibilityIdentity
    public let scheduler: DecodeScheduler?
    public let prefill: PrefillService?
    public let service: WorkerService
    private let server: KVTransferServer
    private let agent: WorkerAgent?
    private let placementClient: PlacementClient?
    private let logger: Logger

    /// The port the worker listens on.
    public var port: Int { server.port }

    /// Builds the engines, binds the listener and starts the decode scheduler; `run` serves.
    public init(model: TransformerModel, tokenizer: Tokenizer, configuration: Configuration, logger: Logger) async throws {
        guard !configuration.roles.isEmpty else { throw WorkerError(.invalidArgument, "a worker needs a role") }
        guard configuration.threads >= 1, configuration.maxBatch >= 1, configuration.context >= 2 else {
            throw WorkerError(.invalidArgument, "threads and max batch must be at least 1 and the context at least 2")
        }
        self.configuration = configuration
        self.logger = logger
        let layout = model.kvCacheLayout()
        identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
        let contextLength = min(configuration.context, model.configuration.contextLength)
        let contextBlocks = layout.blocks(forTokens: contextLength)
        let decodes = configuration.roles.contains(.decode), prefills = configuration.roles.contains(.prefill)

        // With both roles there are two prefill engines (local prompts in the decode loop, shipped ones on the
        // prefill queue's thread): they share one copy of the f32 weights.
        let weights = prefills ? PrefillWeights(model: model, threads: configuration.threads) : nil
        if decodes {
            var settings = DecodeScheduler.Configuration(
                kvBlocks: configuration.kvBlocks ?? configuration.maxBatch * contextBlocks, maxBatch: configuration.maxBatch,
                threads: configuration.threads, maxContext: contextLength, prefillEngine: prefills)
            settings.prefillWeights = weights
            settings.maxQueued = configuration.maxQueued
            settings.prefixCaching = configuration.prefixCaching
            let decode = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: settings)
            decode.start()
            scheduler = decode
        } else {
            scheduler = nil
        }
        if prefills {
            // Room for one full context, or for many shorter prompts batched into shared passes.
            let blocks = decodes
                ? contextBlocks + 1
                : configuration.kvBlocks ?? (configuration.prefixCaching ? configuration.maxBatch * contextBlocks + 1 : contextBlocks + 1)
            let engine = try PrefillEngine(
                model: model, cache: try PagedKVCache(layout: layout, blockCount: blocks), threads: configuration.threads,
                maxContext: contextLength, weights: weights)
            prefill = PrefillService(
                shipper: try PrefillKVShipper(
                    engine: engine, identity: identity, prefixCaching: configuration.prefixCaching), transport: configuration.transport,
                logger: logger)
        } else {
            prefill = nil
        }
        service = WorkerService(
            name: configuration.name, decode: scheduler, prefill: prefill, vocabularySize: model.configuration.vocabularySize,
            defaultTransferTimeout: configuration.transferTimeout,
            maximumTransferTimeout: configuration.maximumTransferTimeout,
            peerKVShare: configuration.peerKVShare,
            mover: decodes && configuration.moveTimeout > .zero
                ? DecodeMover(
                    identity: identity, transport: configuration.transport, offerTimeout: configuration.moveTimeout,
                    logger: logger)
                : nil,
            logger: logger)
        let receiver: any KVTransferReceiver =
            if let scheduler {
                try SchedulerKVReceiver(scheduler: scheduler, identity: identity, reservations: service.reservations, logger: logger)
            } else {
                RefusingKVReceiver(name: configuration.name)
            }
        server = try await KVTransferServer.bind(
            host: configuration.listenHost, port: configuration.listenPort, configuration: configuration.transport,
            identity: identity, receiver: receiver, routes: service.routes, logger: logger)

        if let placement = configuration.placement {
            guard let profile = configuration.profile else {
                throw WorkerError(.invalidArgument, "a worker that registers with placement needs its device profile")
            }
            let advertised: (host: String, port: Int)
            if let advertise = configuration.advertise {
                advertised = advertise
            } else if ["0.0.0.0", "::", ""].contains(configuration.listenHost) {
                advertised = (ProcessInfo.processInfo.hostName, server.port)
                logger.warning("listening on all interfaces; advertising \(advertised.host):\(advertised.port) (set --advertise to choose)")
            } else {
                advertised = (configuration.listenHost, server.port)
            }
            let client = PlacementClient(
                host: placement.host, port: placement.port, tls: configuration.transport.tls,
                insecure: configuration.transport.policy.insecure)
            placementClient = client
            let service = self.service
            agent = WorkerAgent(
                client: client,
                registration: RegisterRequest(
                    profile: profile, roles: configuration.roles.sorted { $0.rawValue < $1.rawValue },
                    address: WorkerAddress(host: advertised.host, port: advertised.port, hostID: configuration.transport.hostID),
                    modelFingerprint: identity.modelFingerprint, contextLength: contextLength,
                    // A new one per process: placement refuses the former process of a restarted worker.
                    incarnation: WorkerIncarnation.now().description),
                load: { service.load() }, logger: logger)
        } else {
            placementClient = nil
            agent = nil
        }
    }

    /// Serves until graceful shutdown, then drains, leaves placement and stops the engines.
    public func run() async throws {
        let serving = Task { await server.run() }
        let heartbeats = agent.map { agent in Task { await agent.run() } }
        try? await gracefulShutdown()
        let inFlight = service.requestsInFlight
        logger.info("\(configuration.name): draining (new requests refused; at most \(configuration.drainTimeout) for \(inFlight) in flight)")
        service.startDraining()
        agent?.setDraining(true)
        // Generations pause at their next step and are offered to their routers to move; those not taken go on.
        if service.mover != nil { scheduler?.parkMovable() }
        if !(await service.waitUntilIdle(timeout: configuration.drainTimeout)) {
            logger.warning("\(service.requestsInFlight) requests still in flight after \(configuration.drainTimeout); leaving anyway")
        }
        if let tally = service.mover?.tally, tally != DecodeMover.Tally() {
            logger.info(
                "\(configuration.name): drain moved \(tally.moved) generations to other decode workers (\(tally.bytes) bytes of KV), \(tally.kept) went on here, \(tally.failed) moves failed")
        }
        heartbeats?.cancel()
        await agent?.leave()
        await placementClient?.close()
        await server.close()
        serving.cancel()
        scheduler?.shutdown()
        await prefill?.closeConnections()
        logger.info("worker \(configuration.name) stopped")
    }
}
