import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// A unary answer from a node.
public struct NodeResponse: Sendable {
    public var status: Int
    public var body: [UInt8]

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A streamed answer from a node: `messages` when `status` is 200, else `body` holds the error response.
public struct NodeStreamResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    /// Length-prefixed messages in order (keep-alives removed). Ends when the server finishes; throws
    /// `RPCError` when the stream breaks or stays silent past the idle timeout. Cancelling the task
    /// that iterates it resets the stream, which cancels the server's handler.
    public var messages: AsyncThrowingStream<[UInt8], any Error>
    /// Resets the stream from any task (the server's handler is cancelled; `messages` ends with an error).
    public var cancel: @Sendable () -> Void
}

/// One HTTP/2 connection (mutual TLS, or h2c in insecure mode) to another Baton process, for control
/// requests: many concurrent requests share it, one stream each. Thread-safe.
public final class NodeClient: Sendable {
    public typealias Connection = NIOHTTP2Handler.AsyncStreamMultiplexer<Void>

    /// Largest single streamed message or unary body accepted.
    public static let maximumMessageBytes = 16 << 20

    private let channel: any Channel
    private let multiplexer: Connection
    private let failures: ConnectionFailures
    private let authority: String
    private let scheme: String

    /// Connects to `host:port`, which must be the node `expecting` describes (its certificate is checked during
    /// the TLS handshake, before any request goes out). `tls` nil means plaintext, allowed only with `insecure`.
    public static func connect(
        host: String, port: Int, tls: NodeTLS?, expecting: PeerExpectation, insecure: Bool = false,
        connectTimeout: Duration = .seconds(5), logger: Logger = Logger(label: "baton.node"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RPCError) -> NodeClient {
        guard tls != nil || insecure else {
            throw RPCError(.invalidArgument, "no TLS certificates given and `insecure` not set for \(host):\(port)")
        }
        let http2 = NodeServer.defaultHTTP2
        let connected = try await connectHTTP2(
            host: host, port: port, sslContext: try tls?.makeClientContext(), expecting: expecting, http2: http2,
            connectTimeout: connectTimeout, group: group)
        return NodeClient(
            channel: connected.channel, multiplexer: connected.multiplexer, failures: connected.failures,
            authority: "\(host):\(port)",
            scheme: tls == nil ? "http" : "https")
    }

    /// Connects over TLS with a context of the caller's making (a joining node's: no certificate of its own, the
    /// CA pinned by the join token); the server's certificate must meet `expecting`.
    static func connect(
        host: String, port: Int, sslContext: NIOSSLContext, expecting: PeerExpectation?, connectTimeout: Duration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RPCError) -> NodeClient {
        let connected = try await connectHTTP2(
            host: host, port: port, sslContext: sslContext, expecting: expecting, http2: NodeServer.defaultHTTP2,
            connectTimeout: connectTimeout, group: group)
        return NodeClient(
            channel: connected.channel, multiplexer: connected.multiplexer, failures: connected.failures,
            authority: "\(host):\(port)", scheme: "https")
    }

    /// A TCP connection (TLS when `sslContext` is given) with an HTTP/2 client pipeline: the transport both this
    /// client and `KVTransferClient` use. `failures` keeps the connection's own error (a TLS alert, say), which
    /// its streams only see as an early end. With TLS, the server's certificate must meet `expecting`, else the
    /// handshake fails (`failures` then holds a `.forbidden` error) and nothing is sent. `expecting` nil checks
    /// nothing beyond what `sslContext` does (a joining node fetching the CA it will then pin).
    public static func connectHTTP2(
        host: String, port: Int, sslContext: NIOSSLContext?, expecting: PeerExpectation?,
        http2: NIOHTTP2Handler.Configuration,
        connectTimeout: Duration, group: any EventLoopGroup
    ) async throws(RPCError) -> (channel: any Channel, multiplexer: Connection, failures: ConnectionFailures) {
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(connectTimeout.timeAmountNanoseconds))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let failures = ConnectionFailures()
                        if let sslContext, expecting == nil {
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: sslContext, serverHostname: nil))
                        } else if let sslContext, let expecting {
                            let address = "\(host):\(port)"
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler._makeSSLClientHandler(
                                    context: sslContext, serverHostname: nil,
                                    additionalPeerCertificateVerificationCallback: { certificate, channel in
                                        do {
                                            try expecting.check(try NodeIdentity(certificate: certificate), at: address)
                                            return channel.eventLoop.makeSucceededVoidFuture()
                                        } catch {
                                            return channel.eventLoop.makeFailedFuture(error)
                                        }
                                    }))
                        }
                        try channel.pipeline.syncOperations.addHandler(ConnectionFailureRecorder(failures))
                        let multiplexer = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                            mode: .client, configuration: http2
                        ) { stream in
                            stream.eventLoop.makeSucceededVoidFuture()
                        }
                        return (channel, multiplexer, failures)
                    }
                }
        } catch {
            throw RPCError(.connectionFailed, "could not connect to \(host):\(port)", cause: error)
        }
    }

    private init(
        channel: any Channel, multiplexer: Connection, failures: ConnectionFailures, authority: String, scheme: String
    ) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.failures = failures
        self.authority = authority
        self.scheme = scheme
    }

    /// Whether the connection is still open (a pool reconnects when it is not).
    public var isActive: Bool { channel.isActive }

    public func close() async {
        try? await channel.close()
    }

    /// Sends `body` to `path` and waits for the whole answer, at most `timeout` in all.
    public func call(
        _ path: String, method: String = "POST", body: [UInt8] = [], contentType: String = "application/json",
        timeout: Duration
    ) async throws(RPCError) -> NodeResponse {
        let stream = try await openStream()
        let watchdog = Watchdog(timeout: timeout)
        let watch = watchdog.start { stream.channel.close(promise: nil) }
        defer { watch.cancel() }
        do {
            return try await stream.executeThenClose { inbound, outbound in
                try await self.writeRequest(outbound, path: path, method: method, body: body, contentType: contentType)
                var status: Int?
                var received: [UInt8] = []
                for try await payload in inbound {
                    switch payload {
                    case .headers(let headers):
                        if status == nil { status = headers.headers.first(name: ":status").flatMap { Int($0) } }
                        if headers.endStream { return NodeResponse(status: status ?? 0, body: received) }
                    case .data(let data):
                        if case .byteBuffer(let buffer) = data.data {
                            guard received.count + buffer.readableBytes <= Self.maximumMessageBytes else {
                                throw RPCError(.protocolViolation, "answer from \(self.authority)\(path) is too large")
                            }
                            received.append(contentsOf: buffer.readableBytesView)
                        }
                        if data.endStream { return NodeResponse(status: status ?? 0, body: received) }
                    case .rstStream(let code):
                        throw RPCError(.truncated, "\(self.authority) reset \(path) (\(code))")
                    default:
                        continue
                    }
                }
                throw RPCError(.truncated, "\(self.authority) closed \(path) before answering")
            }
        } catch {
            if watchdog.fired {
                throw RPCError(.timeout, "\(authority)\(path) did not answer within \(watchdog.seconds) s")
            }
            if let cause = failures.first as? RPCError, cause.code == .forbidden { throw cause }
            if let cause = failures.first {
                throw RPCError(.connectionFailed, "the connection to \(authority) failed during \(path)", cause: cause)
            }
            if let error = error as? RPCError { throw error }
            throw RPCError(.connectionFailed, "request \(path) to \(authority) failed", cause: error)
        }
    }

    /// Sends `body` to `path` and returns once the answer's status is known (at most `idleTimeout`); a 200
    /// answer's messages then arrive through `messages`, each within `idleTimeout` of the previous one.
    public func stream(
        _ path: String, body: [UInt8], contentType: String = "application/x-protobuf", idleTimeout: Duration
    ) async throws(RPCError) -> NodeStreamResponse {
        let stream = try await openStream()
        let (messages, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let head = HeadSignal()
        let authority = self.authority
        let failures = self.failures
        let reader = Task {
            let watchdog = Watchdog(timeout: idleTimeout)
            let watch = watchdog.start { stream.channel.close(promise: nil) }
            defer { watch.cancel() }
            do {
                try await stream.executeThenClose { inbound, outbound in
                    try await self.writeRequest(outbound, path: path, method: "POST", body: body, contentType: contentType)
                    var status: Int?
                    var pending = ByteBuffer()
                    var errorBody: [UInt8] = []
                    for try await payload in inbound {
                        watchdog.touch()
                        var ended = false
                        switch payload {
                        case .headers(let headers):
                            if status == nil {
                                status = headers.headers.first(name: ":status").flatMap { Int($0) } ?? 0
                                if status == 200 { head.resolve(.success((200, []))) }
                            }
                            ended = headers.endStream
                        case .data(let data):
                            if case .byteBuffer(var buffer) = data.data {
                                if status == 200 {
                                    pending.writeBuffer(&buffer)
                                    while let message = try Self.nextMessage(&pending, from: authority) {
                                        if !message.isEmpty { continuation.yield(message) }
                                    }
                                } else if errorBody.count < 64 * 1024 {
                                    errorBody.append(contentsOf: buffer.readableBytesView)
                                }
                            }
                            ended = data.endStream
                        case .rstStream(let code):
                            throw RPCError(.truncated, "\(authority) reset \(path) (\(code))")
                        default:
                            continue
                        }
                        if ended {
                            if status != 200 { head.resolve(.success((status ?? 0, errorBody))) }
                            guard pending.readableBytes == 0 else {
                                throw RPCError(.truncated, "\(authority) ended \(path) inside a message")
                            }
                            continuation.finish()
                            return
                        }
                    }
                    throw RPCError(.truncated, "\(authority) closed \(path) before finishing it")
                }
            } catch {
                let failure: RPCError
                if watchdog.fired {
                    failure = RPCError(.timeout, "\(authority)\(path) was silent for \(watchdog.seconds) s")
                } else if Task.isCancelled {
                    failure = RPCError(.cancelled, "\(path) to \(authority) was cancelled")
                } else if let cause = failures.first as? RPCError, cause.code == .forbidden {
                    failure = cause
                } else if let cause = failures.first {
                    failure = RPCError(.connectionFailed, "the connection to \(authority) failed during \(path)", cause: cause)
                } else if let error = error as? RPCError {
                    failure = error
                } else {
                    failure = RPCError(.truncated, "stream \(path) from \(authority) broke", cause: error)
                }
                head.resolve(.failure(failure))
                continuation.finish(throwing: failure)
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                reader.cancel()
                stream.channel.close(promise: nil)
            }
        }
        let (status, errorBody) = try await head.value()
        return NodeStreamResponse(
            status: status, body: errorBody, messages: messages,
            cancel: {
                reader.cancel()
                stream.channel.close(promise: nil)
            })
    }

    private func openStream() async throws(RPCError) -> HTTP2StreamChannel {
        do {
            return try await multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture { try HTTP2StreamChannel(wrappingChannelSynchronously: channel) }
            }
        } catch {
            if let cause = failures.first as? RPCError, cause.code == .forbidden { throw cause }
            throw RPCError(.connectionFailed, "could not open a stream to \(authority)", cause: error)
        }
    }

    private func writeRequest(
        _ outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>, path: String, method: String,
        body: [UInt8], contentType: String
    ) async throws {
        let headers = HTTP2Frame.FramePayload.Headers(
            headers: [
                ":method": method, ":path": path, ":scheme": scheme, ":authority": authority,
                "content-type": contentType,
            ], endStream: body.isEmpty)
        try await outbound.write(.headers(headers))
        if !body.isEmpty {
            try await outbound.write(.data(.init(data: .byteBuffer(ByteBuffer(bytes: body)), endStream: true)))
        }
    }

    /// Takes one complete length-prefixed message off the front of `buffer`, if there is one.
    static func nextMessage(_ buffer: inout ByteBuffer, from authority: String) throws(RPCError) -> [UInt8]? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard Int(length) <= maximumMessageBytes else {
            throw RPCError(.protocolViolation, "\(authority) sent a \(length)-byte message")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let message = buffer.readBytes(length: Int(length)) ?? []
        buffer.discardReadBytes()
        return message
    }
}

/// The status of a streamed answer, handed from the reading task to the caller once.
private final class HeadSignal: Sendable {
    typealias Head = (Int, [UInt8])
    private let state = Mutex<(result: Result<Head, RPCError>?, waiter: CheckedContinuation<Head, any Error>?)>((nil, nil))

    func resolve(_ result: Result<Head, RPCError>) {
        let waiter: CheckedContinuation<Head, any Error>? = state.withLock { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result.mapError { $0 as any Error })
    }

    func value() async throws(RPCError) -> Head {
        do {
            return try await withCheckedThrowingContinuation { continuation in
                let ready: Result<Head, RPCError>? = state.withLock { state in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(.connectionFailed, "stream failed", cause: error)
        }
    }
}

/// Connections to peers by `host:port`, opened on first use and reopened when closed. Thread-safe.
public final class NodeClientPool: Sendable {
    private let tls: NodeTLS?
    private let insecure: Bool
    private let connectTimeout: Duration
    private let clients = Mutex<[String: NodeClient]>([:])

    public init(tls: NodeTLS?, insecure: Bool = false, connectTimeout: Duration = .seconds(5)) {
        self.tls = tls
        self.insecure = insecure
        self.connectTimeout = connectTimeout
    }

    /// An open connection to `host:port`, which must be the node `expecting` describes (a connection is kept
    /// per address and expectation, so a worker replaced at the same address is checked afresh).
    public func client(host: String, port: Int, expecting: PeerExpectation) async throws(RPCError) -> NodeClient {
        let key = "\(host):\(port)|\(expecting.name ?? "*")|\(expecting.role?.rawValue ?? "*")"
        if let existing = clients.withLock({ $0[key] }), existing.isActive { return existing }
        let fresh = try await NodeClient.connect(
            host: host, port: port, tls: tls, expecting: expecting, insecure: insecure, connectTimeout: connectTimeout)
        let (kept, extra) = clients.withLock { clients -> (NodeClient, NodeClient?) in
            if let other = clients[key], other.isActive, other !== fresh { return (other, fresh) }
            clients[key] = fresh
            return (fresh, nil)
        }
        if let extra { await extra.close() }
        return kept
    }

    /// Closes every connection.
    public func closeAll() async {
        let all = clients.withLock { clients -> [NodeClient] in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        for client in all { await client.close() }
    }
}

extension Duration {
    var timeAmountNanoseconds: Int64 {
        let c = components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }
}

/// The first error a connection's pipeline raised. Streams on a connection that fails only see their inbound
/// end, so callers look here to say why (a TLS alert such as an unknown CA, a reset socket).
public final class ConnectionFailures: Sendable {
    private let error = Mutex<(any Error & Sendable)?>(nil)

    public init() {}

    public var first: (any Error & Sendable)? { error.withLock { $0 } }

    func record(_ failure: any Error & Sendable) {
        error.withLock { if $0 == nil { $0 = failure } }
    }
}

/// Sits after TLS in a client pipeline and keeps the connection's first error in `ConnectionFailures`.
final class ConnectionFailureRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    private let failures: ConnectionFailures

    init(_ failures: ConnectionFailures) { self.failures = failures }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failures.record(error)
        context.fireErrorCaught(error)
    }
}
