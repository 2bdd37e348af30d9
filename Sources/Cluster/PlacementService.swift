import ClusterProtocol
import Foundation
import RPC
import Logging
import Placement
import ServiceLifecycle
import Synchronization

/// The placement service (`baton placement`): workers register and heartbeat here, routers ask it where
/// each request runs, and `baton cluster status` reads the cluster from it. Serves every path of
/// `BatonProtocol.Placement` with JSON bodies (`PlacementWire.swift`) on a mutual-TLS HTTP/2 listener.
///
/// Lifecycle: `start` (loads the policy, replays the membership log, binds), then `serve` until the task is
/// cancelled or `close` is called — or, as a `Service` in a `ServiceGroup`, `run` until graceful shutdown. While running it marks silent workers lost and reloads the policy file
/// when its modification time changes; `reloadPolicy` does the same on demand (SIGHUP). A bad policy edit
/// is logged with its file, line and key, and the old policy stays in force.
public final class PlacementService: Sendable {
    /// How to run the service. Defaults match `baton placement`.
    public struct Configuration: Sendable {
        /// Listen address. Default 127.0.0.1:7400; port 0 picks a free port (see `PlacementService.port`).
        public var host = "127.0.0.1"
        public var port = 7400
        /// Holds `membership.log`. Created when missing.
        public var stateDirectory: String
        /// Policy YAML; nil means the built-in defaults (and nothing to reload).
        public var policyFile: String?
        /// Cluster CA and this node's certificate; nil only with `insecure`.
        public var tls: NodeTLS?
        /// Plaintext h2c without client authentication (logged loudly). Default false.
        public var insecure = false
        /// Interval workers are told to heartbeat at (shortened to a third of the policy's heartbeat
        /// timeout when that is smaller). Default 1 s.
        public var heartbeatInterval: Duration = .seconds(1)
        /// How often the policy file's modification time is checked. Default 1 s.
        public var policyPollInterval: Duration = .seconds(1)
        /// The membership log is compacted (at start and while running) once it holds more events. Default 10 000.
        public var compactAfterEvents = 10_000
        /// The listener's bounds on connections: handshake and idle timeouts, caps per peer and in total.
        public var limits = NodeServerLimits()
        /// Routes served beside placement's own on its listener (the join routes, when it is the cluster's CA);
        /// placement's own paths cannot be replaced. Default none.
        public var additionalRoutes = NodeRoutes()

        public init(stateDirectory: String, policyFile: String?, tls: NodeTLS?, insecure: Bool = false) {
            self.stateDirectory = stateDirectory
            self.policyFile = policyFile
            self.tls = tls
            self.insecure = insecure
        }

        /// The membership log's path.
        public var membershipLogPath: String {
            URL(fileURLWithPath: stateDirectory, isDirectory: true).appendingPathComponent("membership.log").path
        }
    }

    public let configuration: Configuration
    /// The registry the routes call; exposed for tests and tools in the same process.
    public let registry: PlacementRegistry
    private let server: NodeServer
    private let logger: Logger
    /// The policy file's identity when it was last read, to notice edits.
    private let policyStamp: Mutex<FileStamp?>

    /// The port the service listens on.
    public var port: Int { server.port }

    /// Loads the policy (a bad file fails the start with its file:line:key error), replays the membership
    /// log and binds the listener.
    public static func start(_ configuration: Configuration, logger: Logger = Logger(label: "baton.placement"))
        async throws(ClusterError) -> PlacementService
    {
        var policy = PlacementPolicy()
        var stamp: FileStamp?
        if let file = configuration.policyFile {
            stamp = FileStamp(path: file)
            do {
                policy = try PlacementPolicy.load(path: file)
            } catch {
                throw ClusterError(.invalidArgument, "\(error)", cause: error)
            }
        }
        let registry = try PlacementRegistry(
            logPath: configuration.membershipLogPath, policy: policy, policyLoadedAt: Date(),
            heartbeatInterval: configuration.heartbeatInterval, compactAfterEvents: configuration.compactAfterEvents,
            logger: logger)
        if configuration.tls == nil {
            logger.critical("placement service running WITHOUT TLS (--insecure): any process that can reach \(configuration.host):\(configuration.port) can register workers and read the cluster")
        }
        let server: NodeServer
        var routes = Self.routes(registry, logger: logger)
        routes.merge(configuration.additionalRoutes)
        do {
            server = try await NodeServer.bind(
                host: configuration.host, port: configuration.port, tls: configuration.tls,
                insecure: configuration.insecure, routes: routes, limits: configuration.limits, logger: logger)
        } catch {
            throw ClusterError(.unavailable, "cannot listen on \(configuration.host):\(configuration.port): \(error.message)", cause: error)
        }
        logger.info("placement service listening on \(configuration.host):\(server.port) (\(server.isTLS ? "mutual TLS" : "plaintext")), policy \(configuration.policyFile ?? "built-in defaults"), state \(configuration.membershipLogPath)")
        return PlacementService(configuration: configuration, registry: registry, server: server, stamp: stamp, logger: logger)
    }

    private init(configuration: Configuration, registry: PlacementRegistry, server: NodeServer, stamp: FileStamp?, logger: Logger) {
        self.configuration = configuration
        self.registry = registry
        self.server = server
        self.logger = logger
        self.policyStamp = Mutex(stamp)
    }

    /// Serves until `close` is called (or the task is cancelled, which closes the listener) and every
    /// open connection has ended: the listener, the heartbeat-loss check and the policy file watch.
    ///
    /// Connections that are already open keep being served until their clients close them, so a process
    /// that wants to stop at once (SIGTERM) exits after `close`; every membership change is already on disk.
    public func serve() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.expireLoop() }
            if configuration.policyFile != nil {
                group.addTask { await self.watchPolicyLoop() }
            }
            // The listener runs in its own task so that cancelling `run` never cancels a connection's stream
            // loop while its client keeps sending (NodeServer must read every stream it accepts): cancelling
            // closes the listener instead, and `run` waits for the open connections to end.
            let server = self.server
            await withTaskCancellationHandler {
                await Task { await server.run() }.value
            } onCancel: {
                Task { await server.close() }
            }
            group.cancelAll()
        }
    }

    /// Stops accepting connections and closes the open ones; `serve` then returns.
    public func close() async {
        await server.close()
    }

    /// Re-reads the policy file now (what SIGHUP does). On success the new policy is in force for the next
    /// request; on failure the error (file:line:key) is logged and returned, and the old policy stays.
    @discardableResult
    public func reloadPolicy() async -> Result<Void, PlacementError> {
        guard let file = configuration.policyFile else { return .success(()) }
        let stamp = FileStamp(path: file)
        policyStamp.withLock { $0 = stamp }
        let loadedAt = Date()
        do {
            let policy = try PlacementPolicy.load(path: file)
            await registry.install(policy: policy, loadedAt: loadedAt)
            logger.info("policy \(file) reloaded")
            return .success(())
        } catch {
            let kept = await registry.currentPolicy.loadedAt
            logger.error("policy reload failed, keeping the policy loaded at \(kept): \(error)")
            await registry.recordPolicyFailure("\(error)")
            return .failure(error)
        }
    }

    private func expireLoop() async {
        while !Task.isCancelled {
            let timeout = await registry.currentPolicy.policy.membership.heartbeatTimeoutSeconds
            // Check often enough that a loss is noticed within about a quarter of the timeout.
            try? await Task.sleep(for: .milliseconds(max(20, min(1000, Int(timeout * 250)))))
            if Task.isCancelled { return }
            await registry.expire()
        }
    }

    private func watchPolicyLoop() async {
        guard let file = configuration.policyFile else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.policyPollInterval)
            if Task.isCancelled { return }
            let current = FileStamp(path: file)
            if current != policyStamp.withLock({ $0 }) {
                await reloadPolicy()
            }
        }
    }

    // MARK: Routes

    /// Who may call what: workers register, heartbeat and leave only as the node their certificate names and
    /// only in roles it lists; only routers choose; any cluster node may read the status.
    static func routes(_ registry: PlacementRegistry, logger: Logger) -> NodeRoutes {
        var routes = NodeRoutes()
        let workers = NodeAccess.roles([.prefill, .decode])
        routes.on(BatonProtocol.Placement.register, allow: workers) { request, response in
            await answer(response, request, logger: logger) {
                let registration = try decodeBody(RegisterRequest.self, request)
                try authorize(request, actingAs: registration.profile.name, roles: registration.roles)
                return try await registry.register(registration)
            }
        }
        routes.on(BatonProtocol.Placement.heartbeat, allow: workers) { request, response in
            await answer(response, request, logger: logger) {
                let heartbeat = try decodeBody(HeartbeatRequest.self, request)
                try authorize(request, actingAs: heartbeat.name, roles: [])
                return try await registry.heartbeat(heartbeat)
            }
        }
        routes.on(BatonProtocol.Placement.leave, allow: workers) { request, response in
            await answer(response, request, logger: logger) {
                let leave = try decodeBody(LeaveRequest.self, request)
                try authorize(request, actingAs: leave.name, roles: [])
                try await registry.leave(leave)
                return EmptyBody()
            }
        }
        routes.on(BatonProtocol.Placement.choose, allow: .roles([.router])) { request, response in
            await answer(response, request, logger: logger) {
                let ask = try decodeBody(ChooseRequest.self, request)
                return try await registry.choose(promptTokens: ask.promptTokens, excluding: ask.exclude, prompt: ask.prompt)
            }
        }
        routes.on(BatonProtocol.Placement.watch, allow: .roles([.router])) { _, response in
            try await watch(registry, response)
        }
        routes.on(BatonProtocol.Placement.explain, allow: .roles([.router])) { request, response in
            await answer(response, request, logger: logger) {
                let ask = try decodeBody(ChooseRequest.self, request)
                return try await registry.explain(promptTokens: ask.promptTokens, prompt: ask.prompt)
            }
        }
        routes.on(BatonProtocol.Placement.status, allow: .anyNode) { request, response in
            await answer(response, request, logger: logger) { await registry.status() }
        }
        routes.on(BatonProtocol.Placement.health, allow: .anyNode) { request, response in
            await answer(response, request, logger: logger) { ["status": "ok"] }
        }
        return routes
    }

    /// Throws `.forbidden` unless the caller's certificate names worker `name` and lists every one of `roles`.
    static func authorize(_ request: NodeRequest, actingAs name: String, roles: [WorkerRole]) throws(ClusterError) {
        guard request.peer.isNode(name) else {
            throw ClusterError(.forbidden, "the certificate of \(request.peer) may not act as worker \"\(name)\"")
        }
        for role in roles where !request.peer.holds(NodeRole(worker: role)) {
            throw ClusterError(.forbidden, "the certificate of \(request.peer) does not allow the \(role.rawValue) role")
        }
    }

    /// Streams `MembershipSnapshot`s to a router until it goes away: one at once, then one within
    /// `watchPollInterval` of each membership change, and fresh loads once per heartbeat interval. Keep-alives fill
    /// silences so the router can bound its wait.
    static func watch(_ registry: PlacementRegistry, _ response: NodeResponseWriter) async throws {
        try await response.startStream(contentType: "application/json", keepAlive: watchKeepAlive)
        var sentVersion: UInt64 = 0, sentRevision: UInt64 = 0
        var sentPrefix: UInt64?
        var loadsSentAt = ContinuousClock.now
        while !Task.isCancelled {
            let loadsDue = loadsSentAt.duration(to: .now) >= (await registry.heartbeatInterval)
            if let update = await registry.watchUpdate(
                sentVersion: sentVersion, sentRevision: sentRevision, loadsDue: loadsDue, sentPrefix: sentPrefix)
            {
                try await response.send(try PlacementJSON.encode(update.snapshot))
                sentVersion = update.snapshot.version
                sentRevision = update.revision
                sentPrefix = update.snapshot.prefix?.position
                loadsSentAt = .now
            }
            try await Task.sleep(for: watchPollInterval)
        }
    }

    /// How soon a membership change reaches the routers' watch streams.
    static let watchPollInterval: Duration = .milliseconds(50)
    /// Longest silence on a watch stream: routers count a stream silent for a few of these as broken.
    public static let watchKeepAlive: Duration = .seconds(1)

    private struct EmptyBody: Encodable {}

    private static func decodeBody<T: Decodable>(_ type: T.Type, _ request: NodeRequest) throws(ClusterError) -> T {
        do {
            return try PlacementJSON.decode(type, from: request.body)
        } catch {
            throw ClusterError(.invalidArgument, "\(request.path): the body is not a valid \(T.self): \(error)")
        }
    }

    /// Runs `body` and writes its value as a 200 JSON answer, or its error as a `PlacementRefusal` (a 403 is also
    /// logged, naming both sides).
    private static func answer<T: Encodable>(
        _ response: NodeResponseWriter, _ request: NodeRequest, logger: Logger, _ body: () async throws -> T
    ) async {
        var status = 200
        var bytes: [UInt8]
        do {
            bytes = try PlacementJSON.encode(try await body())
        } catch let error as ClusterError {
            status = httpStatus(error.code)
            let refusal = PlacementRefusal(code: refusalCode(error.code), message: error.message,
                                           retryAfterSeconds: error.retryAfterSeconds)
            bytes = (try? PlacementJSON.encode(refusal)) ?? Array(error.message.utf8)
            if status >= 500, status != 503 { logger.error("\(error)") }
            if status == 403 { logger.warning("\(request.refusalLine(error.message))") }
        } catch {
            status = 500
            bytes = (try? PlacementJSON.encode(PlacementRefusal(code: "internal", message: "\(error)"))) ?? []
            logger.error("cannot encode an answer: \(error)")
        }
        do {
            try await response.respond(status: status, body: bytes)
        } catch {
            logger.debug("could not answer: \(error)")
        }
    }

    /// The HTTP status of each error code (the contract in CLUSTER-SPEC.md).
    static func httpStatus(_ code: ClusterError.Code) -> Int {
        switch code {
        case .invalidArgument: 400
        case .notFound: 404
        case .conflict: 409
        case .forbidden: 403
        case .overloaded: 429
        case .unavailable: 503
        default: 500
        }
    }

    /// `PlacementRefusal.code` of each error code.
    static func refusalCode(_ code: ClusterError.Code) -> String {
        switch code {
        case .invalidArgument: "invalid_request"
        case .notFound: "unknown_worker"
        case .conflict: "conflict"
        case .forbidden: "forbidden"
        case .overloaded: "overloaded"
        case .unavailable: "unavailable"
        default: "internal"
        }
    }
}

/// A file's identity for change detection: modification time (ns), size and inode, so an edit, a
/// replacement by rename (what editors and ConfigMap updates do) and a deletion are all noticed.
struct FileStamp: Equatable, Sendable {
    var seconds: Int
    var nanoseconds: Int
    var size: Int
    var inode: UInt64

    /// nil when the file cannot be stat'ed (missing).
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        seconds = Int(info.st_mtim.tv_sec)
        nanoseconds = Int(info.st_mtim.tv_nsec)
        size = Int(info.st_size)
        inode = UInt64(info.st_ino)
    }
}

extension PlacementService: Service {
    /// Serves until graceful shutdown (SIGTERM or SIGINT under a `ServiceGroup`), then closes the listener and its
    /// connections and returns. Every membership change is already on disk: nothing is left to flush.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await serve()
        } onGracefulShutdown: {
            Task { await self.close() }
        }
    }
}
