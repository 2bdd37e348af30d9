import ClusterProtocol
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import RPC

/// The decode worker's listener: accepts KV transfers over HTTP/2 — mutual TLS, or plaintext only when
/// the policy is `insecure` — one transfer per stream, many streams per connection. `routes` adds the
/// worker's control paths to the same port (see `NodeServer`).
///
/// `bind` then `run` (until cancelled or `close`). A client without a certificate from the cluster CA
/// fails the TLS handshake and never reaches the receiver.
public final class KVTransferServer: Sendable {
    private let server: NodeServer

    /// The bound port (useful with port 0).
    public var port: Int { server.port }

    public static func bind(
        host: String, port: Int, configuration: KVTransportConfiguration, identity: KVCompatibilityIdentity,
        receiver: any KVTransferReceiver, routes: NodeRoutes = NodeRoutes(),
        logger: Logger = Logger(label: "baton.kv-transport"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(KVTransportError) -> KVTransferServer {
        let configuration = try configuration.validated()
        let identity = try identity.validated()
        if configuration.policy.allowSharedMemory {
            let stale = SharedMemoryRegion.removeStale()
            if !stale.isEmpty {
                logger.notice("removed \(stale.count) shared-memory KV regions left in /dev/shm by processes that no longer run")
            }
        }
        let settings = KVReceiverSession.Settings(
            identity: identity, capabilities: configuration.capabilities, policy: configuration.policy,
            connectionIsTLS: configuration.tls != nil, maximumChunkBytes: configuration.chunkBytes,
            idleTimeout: configuration.idleTimeout, rdma: configuration.rdma)
        var routes = routes
        // Prefill nodes send KV, and decode nodes moving a generation away; the receiver then checks the request was
        // opened for this very sender.
        routes.onStream(BatonProtocol.transferPath, allow: .roles([.prefill, .decode])) { io in
            await KVReceiverSession(io: io, settings: settings, receiver: receiver, logger: logger).run()
        }
        let server: NodeServer
        do {
            server = try await NodeServer.bind(
                host: host, port: port, tls: configuration.tls, insecure: configuration.policy.insecure, routes: routes,
                http2: configuration.http2Configuration(), idleTimeout: configuration.idleTimeout,
                limits: configuration.listenerLimits, logger: logger,
                group: group)
        } catch {
            throw KVTransportError(rpc: error)
        }
        return KVTransferServer(server: server)
    }

    private init(server: NodeServer) {
        self.server = server
    }

    /// Serves connections until the task is cancelled or `close` is called.
    public func run() async {
        await server.run()
    }

    /// Stops accepting connections; `run` returns once open transfers end.
    public func close() async {
        await server.close()
    }
}

extension KVTransportConfiguration {
    /// HTTP/2 settings for KV streams: windows and frames sized to the chunks.
    public func http2Configuration() -> NIOHTTP2Handler.Configuration {
        var http2 = NIOHTTP2Handler.Configuration()
        http2.connection.targetWindowSize = targetWindowBytes
        http2.stream.targetWindowSize = targetWindowBytes
        http2.stream.outboundBufferSizeHighWatermark = sendBufferBytes
        http2.stream.outboundBufferSizeLowWatermark = sendBufferBytes / 2
        // Larger DATA frames than the default 16 KiB: fewer frames per chunk.
        http2.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 256),
            HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoderDefaultMaxHeaderListSize),
            HTTP2Setting(parameter: .maxFrameSize, value: max(1 << 20, min((1 << 24) - 1, chunkBytes + 65536))),
            HTTP2Setting(parameter: .initialWindowSize, value: targetWindowBytes),
        ]
        return http2
    }
}

/// NIOHPACK's default, repeated here to keep NIOHPACK out of this module's imports.
private let HPACKDecoderDefaultMaxHeaderListSize = 16384
