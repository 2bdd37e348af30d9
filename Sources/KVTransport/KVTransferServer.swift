import ClusterProtocol
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL

/// The decode worker's listener: accepts KV transfers over HTTP/2 — mutual TLS, or plaintext only when
/// the policy is `insecure` — one transfer per stream, many streams per connection.
///
/// `bind` then `run` (until cancelled or `close`). A client without a certificate from the cluster CA
/// fails the TLS handshake and never reaches the receiver.
public final class KVTransferServer: Sendable {
    typealias Connection = NIOHTTP2Handler.AsyncStreamMultiplexer<HTTP2StreamChannel>

    /// The bound port (useful with port 0).
    public let port: Int
    private let listener: NIOAsyncChannel<Connection, Never>
    private let settings: KVReceiverSession.Settings
    private let receiver: any KVTransferReceiver
    private let logger: Logger

    public static func bind(
        host: String, port: Int, configuration: KVTransportConfiguration, identity: KVCompatibilityIdentity,
        receiver: any KVTransferReceiver, logger: Logger = Logger(label: "baton.kv-transport"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(KVTransportError) -> KVTransferServer {
        let configuration = try configuration.validated()
        let identity = try identity.validated()
        let sslContext = try configuration.tls?.makeServerContext()
        if sslContext == nil {
            logger.critical("KV transport listening WITHOUT TLS on \(host):\(port): KV bytes are unencrypted and peers unauthenticated (insecure mode)")
        }
        let http2 = configuration.http2Configuration()
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
                        return try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                            mode: .server, configuration: http2
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try HTTP2StreamChannel(wrappingChannelSynchronously: stream)
                            }
                        }
                    }
                }
        } catch {
            throw KVTransportError(.connectionFailed, "could not listen on \(host):\(port)", cause: error)
        }
        let settings = KVReceiverSession.Settings(
            identity: identity, capabilities: configuration.capabilities, policy: configuration.policy,
            connectionIsTLS: sslContext != nil, maximumChunkBytes: configuration.chunkBytes,
            idleTimeout: configuration.idleTimeout, rdma: configuration.rdma)
        return KVTransferServer(
            port: listener.channel.localAddress?.port ?? port, listener: listener, settings: settings,
            receiver: receiver, logger: logger)
    }

    private init(
        port: Int, listener: NIOAsyncChannel<Connection, Never>, settings: KVReceiverSession.Settings,
        receiver: any KVTransferReceiver, logger: Logger
    ) {
        self.port = port
        self.listener = listener
        self.settings = settings
        self.receiver = receiver
        self.logger = logger
    }

    /// Serves connections until the task is cancelled or `close` is called.
    public func run() async {
        do {
            try await listener.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask { await self.serve(connection) }
                        }
                    } catch {
                        self.logger.debug("KV listener stopped: \(error)")
                    }
                }
            }
        } catch {
            logger.debug("KV listener closed: \(error)")
        }
    }

    /// Stops accepting connections; `run` returns once open transfers end.
    public func close() async {
        try? await listener.channel.close()
    }

    private func serve(_ connection: Connection) async {
        await withDiscardingTaskGroup { group in
            do {
                for try await stream in connection.inbound {
                    group.addTask { await self.handle(stream) }
                }
            } catch {
                // TLS refusals (no or foreign certificate) end up here.
                self.logger.info("KV connection closed: \(error)")
            }
        }
    }

    private func handle(_ stream: HTTP2StreamChannel) async {
        let responseHeaders = HTTP2Frame.FramePayload.Headers(headers: [
            ":status": "200", "content-type": "application/x-baton-kv",
        ])
        do {
            try await stream.executeThenClose { inbound, outbound in
                let io = HTTP2StreamIO(inbound: inbound, outbound: outbound, channel: stream.channel, headers: responseHeaders)
                let watchdog = Watchdog(timeout: settings.idleTimeout)
                let watch = watchdog.start(onFire: io.abort)
                let request = try await io.readHeaders()
                watch.cancel()
                guard let request, request.headers.first(name: ":path") == BatonProtocol.transferPath else {
                    let notFound = HTTP2Frame.FramePayload.Headers(headers: [":status": "404"], endStream: true)
                    try await outbound.write(.headers(notFound))
                    return
                }
                await KVReceiverSession(io: io, settings: settings, receiver: receiver, logger: logger).run()
            }
        } catch {
            logger.debug("KV stream ended: \(error)")
        }
    }
}

extension KVTransportConfiguration {
    func http2Configuration() -> NIOHTTP2Handler.Configuration {
        var http2 = NIOHTTP2Handler.Configuration()
        http2.connection.targetWindowSize = targetWindowBytes
        http2.stream.targetWindowSize = targetWindowBytes
        http2.stream.outboundBufferSizeHighWatermark = sendBufferBytes
        http2.stream.outboundBufferSizeLowWatermark = sendBufferBytes / 2
        // Larger DATA frames than the default 16 KiB: fewer frames per chunk.
        http2.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 256),
            HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoderDefaultMaxHeaderListSize),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 20),
            HTTP2Setting(parameter: .initialWindowSize, value: targetWindowBytes),
        ]
        return http2
    }
}

/// NIOHPACK's default, repeated here to keep NIOHPACK out of this module's imports.
private let HPACKDecoderDefaultMaxHeaderListSize = 16384
