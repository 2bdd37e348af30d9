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
    private let failures: ConnectionFailures
    private let logger: Logger

    /// Connects to `host:port`, whose certificate must meet `expecting` (a decode node; name it when known).
    /// `faults` deliberately breaks transfers (tests of the receiver only).
    public static func connect(
        host: String, port: Int, configuration: KVTransportConfiguration, expecting: PeerExpectation = .role(.decode),
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
                host: host, port: port, sslContext: sslContext, expecting: expecting,
                http2: configuration.http2Configuration(),
                connectTimeout: configuration.connectTimeout, group: group)
        } catch {
            throw KVTransportError(rpc: error)
        }
        return KVTransferClient(
            channel: connected.channel, multiplexer: connected.multiplexer, configuration: configuration,
            authority: "\(host):\(port)", faults: faults, failures: connected.failures, logger: logger)
    }

    private init(
        channel: any Channel, multiplexer: Connection, configuration: KVTransportConfiguration, authority: String,
        faults: KVTransferFaults, failures: ConnectionFailures, logger: Logger
    ) {
        self.failures = failures
        self.channel = channel
        self.multiplexer = multiplexer
        self.configuration = configuration
        self.authority = authority
        self.faults = faults
        self.logger = logger
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

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
            try rethrowRefusal()
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
            try rethrowRefusal()
            throw KVTransportError(.connectionFailed, "stream to \(authority) failed", cause: error)
        }
        if case .failure = result { try rethrowRefusal() }
        return try result.get()
    }

    /// The handshake refused the server's certificate (not the decode node meant): say so, not "stream broke".
    private func rethrowRefusal() throws(KVTransportError) {
        if let refusal = failures.first as? RPCError, refusal.code == .forbidden {
            throw KVTransportError(.refused, refusal.message, cause: refusal)
        }
    }
}
