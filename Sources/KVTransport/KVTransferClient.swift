import ClusterProtocol
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import RPC

/// The prefill worker's connection to one decode worker: HTTP/2 over mutual TLS (plaintext only with
/// `insecure`), one stream per transfer; several transfers may run at once on one connection. When both
/// ends are on one host the receiver switches a transfer to shared memory, automatically.
public final class KVTransferClient: KVTransferSender {
    typealias Connection = NodeClient.Connection

    private let channel: any Channel
    private let multiplexer: Connection
    private let configuration: KVTransportConfiguration
    private let authority: String
    private let faults: KVTransferFaults
    private let logger: Logger

    /// Connects to `host:port`. `faults` deliberately breaks transfers (tests of the receiver only).
    public static func connect(
        host: String, port: Int, configuration: KVTransportConfiguration,
        faults: KVTransferFaults = .none, logger: Logger = Logger(label: "baton.kv-transport"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(KVTransportError) -> KVTransferClient {
        let configuration = try configuration.validated()
        let connected: (channel: any Channel, multiplexer: NodeClient.Connection, failures: ConnectionFailures)
        do {
            let sslContext = try configuration.tls?.makeClientContext()
            if sslContext == nil {
                logger.critical("KV transport connecting to \(host):\(port) WITHOUT TLS: KV bytes are unencrypted and the peer unauthenticated (insecure mode)")
            }
            connected = try await NodeClient.connectHTTP2(
                host: host, port: port, sslContext: sslContext, http2: configuration.http2Configuration(),
                connectTimeout: configuration.connectTimeout, group: group)
        } catch {
            throw KVTransportError(rpc: error)
        }
        return KVTransferClient(
            channel: connected.channel, multiplexer: connected.multiplexer, configuration: configuration,
            authority: "\(host):\(port)", faults: faults, logger: logger)
    }

    private init(
        channel: any Channel, multiplexer: Connection, configuration: KVTransportConfiguration, authority: String,
        faults: KVTransferFaults, logger: Logger
    ) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.configuration = configuration
        self.authority = authority
        self.faults = faults
        self.logger = logger
    }

    public func close() async {
        try? await channel.close()
    }

    public func transfer(
        _ request: KVTransferRequest, produce: (KVOutboundTransfer) async throws -> KVTransferCompletion
    ) async throws(KVTransportError) -> KVTransferReport {
        let stream: HTTP2StreamChannel
        do {
            stream = try await multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture { try HTTP2StreamChannel(wrappingChannelSynchronously: channel) }
            }
        } catch {
            throw KVTransportError(.connectionFailed, "could not open a stream to \(authority)", cause: error)
        }
        let headers = HTTP2Frame.FramePayload.Headers(headers: [
            ":method": "POST", ":path": BatonProtocol.transferPath,
            ":scheme": configuration.tls == nil ? "http" : "https", ":authority": authority,
            "content-type": "application/x-baton-kv",
        ])
        let result: Result<KVTransferReport, KVTransportError>
        do {
            result = try await stream.executeThenClose { inbound, outbound in
                let io = HTTP2StreamIO(inbound: inbound, outbound: outbound, channel: stream.channel, headers: headers)
                let session = KVSenderSession(
                    io: io, request: request, capabilities: configuration.capabilities,
                    chunkBytes: configuration.chunkBytes, idleTimeout: configuration.idleTimeout, faults: faults,
                    logger: logger, rdma: configuration.rdma)
                do throws(KVTransportError) {
                    return .success(try await session.run(produce: produce))
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            throw KVTransportError(.connectionFailed, "stream to \(authority) failed", cause: error)
        }
        return try result.get()
    }
}
