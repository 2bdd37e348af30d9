import Logging
import NIOCore
import RPC

/// The in-process twin of the network transports, for unit tests: the same frames, state machines and
/// checks as HTTP/2 (and shared memory or RDMA, when both capabilities say so), carried by in-memory pipes.
public struct InMemoryKVTransport: KVTransferSender {
    public var receiverIdentity: KVCompatibilityIdentity
    public var receiver: any KVTransferReceiver
    public var senderCapabilities: KVTransportCapabilities
    public var receiverCapabilities: KVTransportCapabilities
    public var policy: KVTransportPolicy
    public var chunkBytes: Int
    public var idleTimeout: Duration
    public var faults: KVTransferFaults
    /// The device both ends open when both capabilities offer RDMA (tests load the emulated provider).
    public var rdma: RDMASettings
    public var logger: Logger

    public init(
        receiverIdentity: KVCompatibilityIdentity, receiver: any KVTransferReceiver,
        senderCapabilities: KVTransportCapabilities = KVTransportCapabilities(hostID: "", sharedMemory: false, rdma: false),
        receiverCapabilities: KVTransportCapabilities = KVTransportCapabilities(hostID: "", sharedMemory: false, rdma: false),
        policy: KVTransportPolicy = KVTransportPolicy(), chunkBytes: Int = 256 * 1024,
        idleTimeout: Duration = .seconds(10), faults: KVTransferFaults = .none, rdma: RDMASettings = RDMASettings(),
        logger: Logger = Logger(label: "baton.kv-transport.in-memory")
    ) {
        self.receiverIdentity = receiverIdentity
        self.receiver = receiver
        self.senderCapabilities = senderCapabilities
        self.receiverCapabilities = receiverCapabilities
        self.policy = policy
        self.chunkBytes = chunkBytes
        self.idleTimeout = idleTimeout
        self.faults = faults
        self.rdma = rdma
        self.logger = logger
    }

    public func transfer(
        _ request: KVTransferRequest, produce: (KVOutboundTransfer) async throws -> KVTransferCompletion
    ) async throws(KVTransportError) -> KVTransferReport {
        let (senderIO, receiverIO) = InMemoryStreamIO.pair()
        let settings = KVReceiverSession.Settings(
            identity: receiverIdentity, capabilities: receiverCapabilities, policy: policy, connectionIsTLS: true,
            maximumChunkBytes: chunkBytes, idleTimeout: idleTimeout, rdma: rdma)
        let receiver = self.receiver
        let logger = self.logger
        let receiving = Task {
            let failure = await KVReceiverSession(io: receiverIO, settings: settings, receiver: receiver, logger: logger).run()
            // As an HTTP/2 stream is closed when its handler returns.
            receiverIO.abort()
            return failure
        }
        let sender = KVSenderSession(
            io: senderIO, request: request, capabilities: senderCapabilities, chunkBytes: chunkBytes,
            idleTimeout: idleTimeout, faults: faults, logger: logger, rdma: rdma)
        do {
            let report = try await sender.run(produce: produce)
            _ = await receiving.value
            return report
        } catch {
            senderIO.abort()
            _ = await receiving.value
            throw error
        }
    }
}

/// One end of an in-memory byte pipe pair.
final class InMemoryStreamIO: KVStreamIO, @unchecked Sendable {
    struct Reset: Error {}
    typealias Pipe = AsyncThrowingStream<ByteBuffer, any Error>

    private var iterator: Pipe.AsyncIterator
    private let outgoing: Pipe.Continuation
    private let incoming: Pipe.Continuation
    let allocator = ByteBufferAllocator()
    /// In-process pipes carry no certificate.
    let peer = NodePeer.unauthenticated

    private init(incoming: (Pipe, Pipe.Continuation), outgoing: Pipe.Continuation) {
        self.iterator = incoming.0.makeAsyncIterator()
        self.incoming = incoming.1
        self.outgoing = outgoing
    }

    static func pair() -> (InMemoryStreamIO, InMemoryStreamIO) {
        let aToB = Pipe.makeStream()
        let bToA = Pipe.makeStream()
        return (
            InMemoryStreamIO(incoming: bToA, outgoing: aToB.continuation),
            InMemoryStreamIO(incoming: aToB, outgoing: bToA.continuation)
        )
    }

    func read() async throws -> ByteBuffer? {
        try await iterator.next()
    }

    func write(_ buffer: ByteBuffer, endStream: Bool) async throws {
        if case .terminated = outgoing.yield(buffer) { throw Reset() }
        if endStream { outgoing.finish() }
    }

    func abort(sendingFirst finalFrame: ByteBuffer) -> @Sendable () -> Void {
        let outgoing = self.outgoing
        let incoming = self.incoming
        return {
            outgoing.yield(finalFrame)
            outgoing.finish()
            incoming.finish(throwing: Reset())
        }
    }

    var abort: @Sendable () -> Void {
        let outgoing = self.outgoing
        let incoming = self.incoming
        return {
            outgoing.finish(throwing: Reset())
            incoming.finish(throwing: Reset())
        }
    }
}
