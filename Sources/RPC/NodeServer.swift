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
public typealias NodeStreamHandler = @Sendable (HTTP2StreamIO) async -> Void

/// The paths a node's listener answers.
public struct NodeRoutes: Sendable {
    var handlers: [String: NodeHandler] = [:]
    var streamHandlers: [String: NodeStreamHandler] = [:]

    public init() {}

    /// Serves `path` (exact match, any method) with `handler`: the request body is read in full first.
    public mutating func on(_ path: String, _ handler: @escaping NodeHandler) {
        handlers[path] = handler
    }

    /// Serves `path` with `handler`, which gets the stream itself (see `NodeStreamHandler`).
    public mutating func onStream(_ path: String, _ handler: @escaping NodeStreamHandler) {
        streamHandlers[path] = handler
    }

    public var paths: [String] { (Array(handlers.keys) + Array(streamHandlers.keys)).sorted() }
}

/// The listener every Baton process serves its peers on: HTTP/2 over mutual TLS (plaintext h2c only in
/// `insecure` mode, logged loudly), one request per stream. Routes answer control requests; a decode
/// worker's listener also takes KV transfers on a stream route, so one port carries both.
///
/// `bind`, then `run` until cancelled or `close`d.
public final class NodeServer: Sendable {
    typealias Multiplexer = NIOHTTP2Handler.AsyncStreamMultiplexer<HTTP2StreamChannel>
    typealias Connection = (channel: any Channel, streams: Multiplexer)

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
    private let logger: Logger
    /// Open connections, closed by `close` so that `run` returns even while peers stay connected.
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// Listens on `host:port`. `tls` nil means plaintext, allowed only with `insecure`. `idleTimeout` bounds each
    /// wait for a request's bytes (stream routes keep their own bounds).
    public static func bind(
        host: String, port: Int, tls: NodeTLS?, insecure: Bool = false, routes: NodeRoutes,
        http2: NIOHTTP2Handler.Configuration = NodeServer.defaultHTTP2, idleTimeout: Duration = .seconds(10),
        logger: Logger = Logger(label: "baton.node"), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RPCError) -> NodeServer {
        guard tls != nil || insecure else {
            throw RPCError(.invalidArgument, "no TLS certificates given and `insecure` not set for \(host):\(port)")
        }
        let sslContext = try tls?.makeServerContext()
        if sslContext == nil {
            logger.critical("listening WITHOUT TLS on \(host):\(port): traffic is unencrypted and peers unauthenticated (insecure mode)")
        }
        let listener: NIOAsyncChannel<Connection, Never>
        do {
            listener = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let sslContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        }
                        let streams = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                            mode: .server, configuration: http2
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try HTTP2StreamChannel(wrappingChannelSynchronously: stream)
                            }
                        }
                        return (channel, streams)
                    }
                }
        } catch {
            throw RPCError(.connectionFailed, "could not listen on \(host):\(port)", cause: error)
        }
        return NodeServer(
            port: listener.channel.localAddress?.port ?? port, isTLS: sslContext != nil, listener: listener,
            routes: routes, idleTimeout: idleTimeout, logger: logger)
    }

    private init(
        port: Int, isTLS: Bool, listener: NIOAsyncChannel<Connection, Never>, routes: NodeRoutes,
        idleTimeout: Duration, logger: Logger
    ) {
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
                    group.addTask { await self.handle(stream) }
                }
            } catch let error as NIOSSLError {
                // A peer without a certificate from the cluster CA (or with none) ends up here.
                self.logger.warning("refused a connection from \(Self.peer(connection.channel)): TLS handshake failed (\(error))")
            } catch {
                self.logger.info("connection from \(Self.peer(connection.channel)) closed: \(error)")
            }
        }
    }

    private static func peer(_ channel: any Channel) -> String {
        channel.remoteAddress.map { "\($0)" } ?? "an unknown peer"
    }

    private func handle(_ stream: HTTP2StreamChannel) async {
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
                if let streamHandler = routes.streamHandlers[path] {
                    watch.cancel()
                    await streamHandler(io)
                    return
                }
                let writer = NodeResponseWriter(outbound: outbound, allocator: stream.channel.allocator)
                guard let handler = routes.handlers[path] else {
                    try await writer.respond(status: 404, body: Array(#"{"error":"no such path"}"#.utf8))
                    return
                }
                var body: [UInt8] = []
                while let buffer = try await io.read() {
                    watchdog.touch()
                    guard body.count + buffer.readableBytes <= Self.maximumRequestBytes else {
                        try await writer.respond(status: 413, body: Array(#"{"error":"request body too large"}"#.utf8))
                        return
                    }
                    body.append(contentsOf: buffer.readableBytesView)
                }
                watch.cancel()
                let request = NodeRequest(method: method, path: path, body: body)
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
