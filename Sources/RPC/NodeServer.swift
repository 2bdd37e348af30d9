import Foundation
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// A request to a node's listener: one HTTP/2 stream whose body was read in full.
public struct NodeRequest: Sendable {
    public var method: String
    public var path: String
    public var body: [UInt8]
    /// Who sent it, as the connection's certificate proves (`.unauthenticated` only in insecure mode).
    public var peer: NodePeer
    /// The peer's socket address, for log lines.
    public var peerAddress: String
    /// This node, for log lines ("placement (placement)").
    public var server: String

    public init(method: String, path: String, body: [UInt8], peer: NodePeer, peerAddress: String = "", server: String = "") {
        self.method = method
        self.path = path
        self.body = body
        self.peer = peer
        self.peerAddress = peerAddress
        self.server = server
    }

    /// The line a refusal is logged with: both sides, the path and why.
    public func refusalLine(_ reason: String) -> String {
        "\(server) refused \(path) from \(peer) at \(peerAddress): \(reason)"
    }
}

/// Which peers may call a route. Every route states one: the listener answers 403 to anyone else, before
/// the handler runs (the handler then checks what only it can: acting under one's own name, a request's owner).
public enum NodeAccess: Sendable {
    /// Any node with a certificate from the cluster CA (health, status).
    case anyNode
    /// Only nodes whose certificate allows one of these roles.
    case roles(Set<NodeRole>)
    /// Anyone who completes the TLS handshake, with or without a certificate: only for a node that has none
    /// yet (joining). A listener with such a route asks for client certificates instead of requiring them;
    /// its other routes still refuse a caller without one.
    case anyone

    /// Why `peer` may not call, or nil when it may.
    func refusal(of peer: NodePeer) -> String? {
        switch (self, peer) {
        case (.anyone, _), (_, .unauthenticated): return nil
        case (_, .anonymous): return "this path needs a certificate from the cluster CA"
        case (.anyNode, .node): return nil
        case (.roles(let allowed), .node(let identity)):
            if !identity.roles.isDisjoint(with: allowed) { return nil }
            return "only \(allowed.sorted().map(\.rawValue).joined(separator: " or ")) nodes may call this; the certificate allows \(identity.roles.isEmpty ? "no role" : identity.roles.listed)"
        }
    }
}

/// How a route answers: once (`respond`) or with a stream of length-prefixed messages (`startStream`,
/// `send`…, `finish`). Used by the route's task only (a stream's keep-alives are written by the writer itself).
///
/// On the wire a streamed message is `UInt32 big-endian length | bytes`; a zero-length message is a
/// keep-alive that clients skip.
public final class NodeResponseWriter: @unchecked Sendable {
    private let outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>
    private let allocator: ByteBufferAllocator
    private(set) var started = false
    private(set) var ended = false
    /// When the last message went out (keep-alives fill the silences).
    private let lastSent = Mutex(ContinuousClock.now)
    private var keepAlive: Task<Void, Never>?

    init(outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>, allocator: ByteBufferAllocator) {
        self.outbound = outbound
        self.allocator = allocator
    }

    deinit { keepAlive?.cancel() }

    /// Sends the whole response and ends the stream.
    public func respond(status: Int, contentType: String = "application/json", body: [UInt8]) async throws {
        guard !started else { throw RPCError(.invalidArgument, "the response has already started") }
        started = true
        ended = true
        try await outbound.write(.headers(.init(headers: [":status": String(status), "content-type": contentType])))
        try await outbound.write(.data(.init(data: .byteBuffer(allocator.buffer(bytes: body)), endStream: true)))
    }

    /// Starts a streamed 200 response. With `keepAlive`, an empty message goes out whenever that long passed
    /// without one (slow work, e.g. waiting for a prefill, then never trips the client's idle timeout).
    public func startStream(contentType: String = "application/x-protobuf", keepAlive interval: Duration? = nil) async throws {
        guard !started else { throw RPCError(.invalidArgument, "the response has already started") }
        started = true
        try await outbound.write(.headers(.init(headers: [":status": "200", "content-type": contentType])))
        lastSent.withLock { $0 = .now }
        guard let interval else { return }
        keepAlive = Task { [weak self] in
            while !Task.isCancelled, let due = self?.lastSent.withLock({ $0 + interval }) {
                if ContinuousClock.now >= due {
                    guard let self, (try? await self.write(Self.keepAliveMessage)) != nil else { return }
                    continue
                }
                try? await Task.sleep(until: due, clock: .continuous)
            }
        }
    }

    /// Sends one message of a streamed response.
    public func send(_ message: [UInt8]) async throws {
        guard started, !ended else { throw RPCError(.invalidArgument, "send outside a started stream") }
        try await write(message)
    }

    private static let keepAliveMessage: [UInt8] = []

    private func write(_ message: [UInt8]) async throws {
        var buffer = allocator.buffer(capacity: 4 + message.count)
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        try await outbound.write(.data(.init(data: .byteBuffer(buffer))))
        lastSent.withLock { $0 = .now }
    }

    /// Ends a streamed response.
    public func finish() async throws {
        keepAlive?.cancel()
        guard started, !ended else { return }
        ended = true
        try await outbound.write(.data(.init(data: .byteBuffer(allocator.buffer(capacity: 0)), endStream: true)))
    }
}

/// A route's handler. Throwing before the response started answers 500 with the error's text; throwing
/// after resets the stream. The handler's task is cancelled when the client resets the stream or goes away.
public typealias NodeHandler = @Sendable (NodeRequest, NodeResponseWriter) async throws -> Void

/// A route that takes the raw stream both ways (a KV transfer): it reads and writes through the `HTTP2StreamIO`
/// itself, with no idle timeout of the listener's (it keeps its own). The stream ends when it returns.
/// `io.peer` says who sent it.
public typealias NodeStreamHandler = @Sendable (HTTP2StreamIO) async -> Void

/// The paths a node's listener answers, each with who may call it.
public struct NodeRoutes: Sendable {
    var handlers: [String: (access: NodeAccess, handler: NodeHandler)] = [:]
    var streamHandlers: [String: (access: NodeAccess, handler: NodeStreamHandler)] = [:]

    public init() {}

    /// Serves `path` (exact match, any method) to peers `access` admits, with `handler`: the request body is
    /// read in full first.
    public mutating func on(_ path: String, allow access: NodeAccess, _ handler: @escaping NodeHandler) {
        handlers[path] = (access, handler)
    }

    /// Serves `path` to peers `access` admits with `handler`, which gets the stream itself (see `NodeStreamHandler`).
    public mutating func onStream(_ path: String, allow access: NodeAccess, _ handler: @escaping NodeStreamHandler) {
        streamHandlers[path] = (access, handler)
    }

    /// Adds `other`'s routes; a path this set already serves keeps its own handler.
    public mutating func merge(_ other: NodeRoutes) {
        handlers.merge(other.handlers) { mine, _ in mine }
        streamHandlers.merge(other.streamHandlers) { mine, _ in mine }
    }

    public var paths: [String] { (Array(handlers.keys) + Array(streamHandlers.keys)).sorted() }

    /// Whether some route is open to callers without a certificate (`NodeAccess.anyone`).
    var admitsAnonymous: Bool {
        handlers.values.contains { if case .anyone = $0.access { true } else { false } }
            || streamHandlers.values.contains { if case .anyone = $0.access { true } else { false } }
    }
}

/// The listener every Baton process serves its peers on: HTTP/2 over mutual TLS (plaintext h2c only in
/// `insecure` mode, logged loudly), one request per stream. Routes answer control requests; a decode
/// worker's listener also takes KV transfers on a stream route, so one port carries both.
///
/// `bind`, then `run` until cancelled or `close`d.
public final class NodeServer: Sendable {
    typealias Multiplexer = NIOHTTP2Handler.AsyncStreamMultiplexer<HTTP2StreamChannel>
    typealias Connection = (channel: any Channel, streams: Multiplexer, peer: PeerRecord, budget: ConnectionBudget)

    /// HTTP/2 settings for control traffic: 8 MiB windows (a KV listener passes its own, larger frames).
    public static var defaultHTTP2: NIOHTTP2Handler.Configuration {
        var http2 = NIOHTTP2Handler.Configuration()
        http2.connection.targetWindowSize = 8 << 20
        http2.stream.targetWindowSize = 8 << 20
        return http2
    }

    /// Largest request body a route accepts.
    public static let maximumRequestBytes = 16 << 20

    /// The bound port (useful with port 0).
    public let port: Int
    public let isTLS: Bool
    private let listener: NIOAsyncChannel<Connection, Never>
    private let routes: NodeRoutes
    private let idleTimeout: Duration
    private let minimumProgressBytes: Int
    /// This node's identity, for log lines.
    private let serverName: String
    private let logger: Logger
    /// Open connections, closed by `close` so that `run` returns even while peers stay connected.
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// Listens on `host:port`. `tls` nil means plaintext, allowed only with `insecure`. `idleTimeout` bounds each
    /// wait for a request's head and each window in which its body must make `limits.minimumProgressBytes` of
    /// progress (stream routes keep their own bounds); `limits` bounds connections (see `NodeServerLimits`).
    public static func bind(
        host: String, port: Int, tls: NodeTLS?, insecure: Bool = false, routes: NodeRoutes,
        http2: NIOHTTP2Handler.Configuration = NodeServer.defaultHTTP2, idleTimeout: Duration = .seconds(10),
        limits: NodeServerLimits = NodeServerLimits(),
        logger: Logger = Logger(label: "baton.node"), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RPCError) -> NodeServer {
        guard tls != nil || insecure else {
            throw RPCError(.invalidArgument, "no TLS certificates given and `insecure` not set for \(host):\(port)")
        }
        let admitsAnonymous = routes.admitsAnonymous
        let sslContext = try tls?.makeServerContext(requireClientCertificate: !admitsAnonymous)
        let identity = try tls?.identity()
        let serverName = identity.map { "\($0)" } ?? "this node (insecure)"
        if sslContext == nil {
            logger.critical("listening WITHOUT TLS on \(host):\(port): traffic is unencrypted and peers unauthenticated (insecure mode)")
        }
        let listener: NIOAsyncChannel<Connection, Never>
        let counter = ConnectionCounter(limits: limits)
        do {
            listener = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let address = channel.remoteAddress?.ipAddress ?? "an unknown address"
                        if let refusal = counter.admit(address) {
                            logger.warning("\(serverName) refused a connection from \(address): \(refusal)")
                            throw RPCError(.connectionFailed, refusal)
                        }
                        channel.closeFuture.whenComplete { _ in counter.release(address) }
                        // With a route open to anyone, a client may skip its certificate: the handshake then
                        // records no identity and the connection's streams arrive as `.anonymous`.
                        let peer = PeerRecord(sslContext == nil ? .unauthenticated : nil, admitsAnonymous: admitsAnonymous)
                        let budget = ConnectionBudget(limit: limits.maximumBufferedBytesPerConnection)
                        if let sslContext {
                            // The chain was verified against the cluster CA; this reads who it says the peer is and
                            // fails the handshake when it says nobody.
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler._makeSSLServerHandler(
                                context: sslContext,
                                additionalPeerCertificateVerificationCallback: { certificate, channel in
                                    do {
                                        peer.set(.node(try NodeIdentity(certificate: certificate)))
                                        return channel.eventLoop.makeSucceededVoidFuture()
                                    } catch {
                                        logger.warning("\(serverName) refused a connection from \(Self.peer(channel)): \((error as? RPCError)?.message ?? "\(error)")")
                                        return channel.eventLoop.makeFailedFuture(error)
                                    }
                                }))
                        }
                        try channel.pipeline.syncOperations.addHandler(ConnectionDeadlines(limits: limits) { reason in
                            logger.warning("\(serverName) closed the connection from \(address): \(reason)")
                        })
                        let streams = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                            mode: .server, configuration: http2
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try HTTP2StreamChannel(wrappingChannelSynchronously: stream)
                            }
                        }
                        return (channel, streams, peer, budget)
                    }
                }
        } catch {
            throw RPCError(.connectionFailed, "could not listen on \(host):\(port)", cause: error)
        }
        return NodeServer(
            port: listener.channel.localAddress?.port ?? port, isTLS: sslContext != nil, listener: listener,
            routes: routes, idleTimeout: idleTimeout, minimumProgressBytes: limits.minimumProgressBytes,
            serverName: serverName, logger: logger)
    }

    private init(
        port: Int, isTLS: Bool, listener: NIOAsyncChannel<Connection, Never>, routes: NodeRoutes,
        idleTimeout: Duration, minimumProgressBytes: Int, serverName: String, logger: Logger
    ) {
        self.minimumProgressBytes = minimumProgressBytes
        self.serverName = serverName
        self.port = port
        self.isTLS = isTLS
        self.listener = listener
        self.routes = routes
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    /// Serves connections until the task is cancelled or `close` is called.
    public func run() async {
        // Cancellation must not cut the accept loops short: a stream the multiplexer already accepted would be
        // dropped unhandled. Cancelling closes the channels instead, and the loops run out on their own.
        let serving = Task { await self.serveListener() }
        await withTaskCancellationHandler {
            await serving.value
        } onCancel: {
            Task { await self.close() }
        }
    }

    private func serveListener() async {
        do {
            try await listener.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask { await self.serve(connection) }
                        }
                    } catch {
                        self.logger.debug("listener stopped: \(error)")
                    }
                }
            }
        } catch {
            logger.debug("listener closed: \(error)")
        }
    }

    /// Stops accepting connections and closes the open ones (their streams end); `run` then returns.
    public func close() async {
        try? await listener.channel.close()
        let open = connections.withLock { connections in
            defer { connections.removeAll() }
            return Array(connections.values)
        }
        for channel in open { try? await channel.close() }
    }

    private func serve(_ connection: Connection) async {
        let key = ObjectIdentifier(connection.channel)
        connections.withLock { $0[key] = connection.channel }
        defer {
            connections.withLock { $0[key] = nil }
            connection.channel.close(promise: nil)
        }
        await withDiscardingTaskGroup { group in
            do {
                for try await stream in connection.streams.inbound {
                    let peer = connection.peer.value
                    let address = Self.peer(connection.channel)
                    let budget = connection.budget
                    group.addTask { await self.handle(stream, peer: peer, address: address, budget: budget) }
                }
            } catch let error as NIOSSLError {
                // A peer without a certificate from the cluster CA (or with none) ends up here.
                self.logger.warning("refused a connection from \(Self.peer(connection.channel)): TLS handshake failed (\(error))")
            } catch {
                self.logger.info("connection from \(Self.peer(connection.channel)) closed: \(error)")
            }
        }
    }

    /// Answers 403 and logs who refused whom, and why.
    private func refuse(
        _ writer: NodeResponseWriter, path: String, from peer: String, at address: String, _ reason: String
    ) async throws {
        logger.warning("\(serverName) refused \(path) from \(peer) at \(address): \(reason)")
        try await writer.respond(status: 403, body: Self.forbiddenBody(reason))
    }

    /// The JSON body of a 403: `{"code":"forbidden","message":…}`, as every Baton refusal reads.
    public static func forbiddenBody(_ message: String) -> [UInt8] {
        let object = ["code": "forbidden", "message": message]
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    static func peer(_ channel: any Channel) -> String {
        channel.remoteAddress.map { "\($0)" } ?? "an unknown peer"
    }

    private func handle(_ stream: HTTP2StreamChannel, peer: NodePeer?, address: String, budget: ConnectionBudget) async {
        let streamHeaders = HTTP2Frame.FramePayload.Headers(headers: [
            ":status": "200", "content-type": "application/octet-stream",
        ])
        do {
            try await stream.executeThenClose { inbound, outbound in
                let io = HTTP2StreamIO(inbound: inbound, outbound: outbound, channel: stream.channel, headers: streamHeaders)
                let watchdog = Watchdog(timeout: idleTimeout)
                let watch = watchdog.start(onFire: io.abort)
                defer { watch.cancel() }
                guard let headers = try await io.readHeaders() else { return }
                let path = headers.headers.first(name: ":path") ?? ""
                let method = headers.headers.first(name: ":method") ?? "GET"
                let writer = NodeResponseWriter(outbound: outbound, allocator: stream.channel.allocator)
                let access = routes.streamHandlers[path]?.access ?? routes.handlers[path]?.access
                guard let access else {
                    try await writer.respond(status: 404, body: Array(#"{"error":"no such path"}"#.utf8))
                    return
                }
                guard let peer else {
                    // Unreachable: streams only arrive after the handshake recorded the peer. Refuse all the same.
                    return try await refuse(writer, path: path, from: "a peer with no identity", at: address, "no identity was recorded")
                }
                if let reason = access.refusal(of: peer) {
                    return try await refuse(writer, path: path, from: "\(peer)", at: address, reason)
                }
                if let streamHandler = routes.streamHandlers[path]?.handler {
                    watch.cancel()
                    io.peer = peer
                    await streamHandler(io)
                    return
                }
                guard let handler = routes.handlers[path]?.handler else { return }
                var body: [UInt8] = []
                // Bytes taken from the connection's budget, given back when the request is done.
                var charged = 0
                defer { budget.give(charged) }
                // Progress is bytes, not any byte: each idle window must bring `minimumProgressBytes` (or the end).
                var sinceProgress = 0
                while let buffer = try await io.read() {
                    sinceProgress += buffer.readableBytes
                    if sinceProgress >= minimumProgressBytes {
                        watchdog.touch()
                        sinceProgress = 0
                    }
                    guard body.count + buffer.readableBytes <= Self.maximumRequestBytes else {
                        try await writer.respond(status: 413, body: Array(#"{"error":"request body too large"}"#.utf8))
                        return
                    }
                    guard budget.take(buffer.readableBytes) else {
                        logger.warning("\(serverName) refused \(path) from \(address): the connection's request bodies passed \(budget.limit) bytes")
                        try await writer.respond(status: 503, body: Array(#"{"error":"too many request bytes buffered on this connection"}"#.utf8))
                        return
                    }
                    charged += buffer.readableBytes
                    body.append(contentsOf: buffer.readableBytesView)
                }
                watch.cancel()
                let request = NodeRequest(
                    method: method, path: path, body: body, peer: peer, peerAddress: address, server: serverName)
                let task = Task { try await handler(request, writer) }
                // A reset or a vanished client closes the stream channel: stop the handler's work.
                stream.channel.closeFuture.whenComplete { _ in task.cancel() }
                do {
                    try await task.value
                    try await writer.finish()
                } catch {
                    if !writer.started {
                        logger.info("\(path) failed: \(error)")
                        try? await writer.respond(status: 500, body: Array(String(describing: error).utf8))
                    } else {
                        logger.debug("\(path) ended early: \(error)")
                        stream.channel.close(promise: nil)
                    }
                }
            }
        } catch {
            logger.debug("stream ended: \(error)")
        }
    }
}

/// The identity a connection's handshake proved, read by the streams that follow it.
final class PeerRecord: Sendable {
    private let peer: Mutex<NodePeer?>
    private let admitsAnonymous: Bool

    init(_ peer: NodePeer?, admitsAnonymous: Bool = false) {
        self.peer = Mutex(peer)
        self.admitsAnonymous = admitsAnonymous
    }

    /// Read once streams arrive, i.e. after the handshake: nil only when it proved nobody on a listener that
    /// requires certificates (which cannot happen; refused all the same).
    var value: NodePeer? { peer.withLock { $0 } ?? (admitsAnonymous ? .anonymous : nil) }

    func set(_ value: NodePeer) { peer.withLock { $0 = value } }
}
