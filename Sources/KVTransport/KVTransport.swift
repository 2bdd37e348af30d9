/// The decode worker's side of the transport: it decides whether to take a transfer and where its
/// layers go. Implementations glue the transport to the KV cache (`PagedKVCache.importSequence` /
/// `importLayer`); the transport itself knows nothing of the engine.
public protocol KVTransferReceiver: Sendable {
    /// A compatible sender (identity already checked) wants to hand over `request`. Reserve room and
    /// return the object that takes its layers, or throw to refuse (the sender gets `.refused`).
    func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer
}

/// One transfer being received. The transport calls `receiveLayer` for layers 0..<layers in order, then
/// exactly one of `complete` or `fail`.
public protocol KVInboundTransfer: AnyObject, Sendable {
    /// Layer `layer`, complete and checksum-verified. `bytes` is valid only during the call: copy it.
    /// Throwing aborts the transfer (and `fail` follows).
    func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws
    /// Every layer arrived; decoding may start from `completion`. Throwing aborts the transfer.
    func complete(_ completion: KVTransferCompletion) async throws
    /// The transfer failed: free everything reserved for it (layers already received included). Never
    /// called after `complete` returned normally.
    func fail(_ error: KVTransportError) async
}

/// The prefill worker's side: one transfer at a time per call.
public protocol KVTransferSender: Sendable {
    /// Hands `request`'s KV to the receiver. `produce` is called once the receiver has accepted; it sends
    /// each layer in order through the lent `KVOutboundTransfer` (do not let it escape) and returns the
    /// completion. Returns when the receiver confirmed it has everything; throws `KVTransportError`
    /// (the receiver has then freed what it had). If `produce` throws, the receiver is told the transfer
    /// is cancelled and the error is rethrown as `.cancelled`.
    func transfer(
        _ request: KVTransferRequest,
        produce: (KVOutboundTransfer) async throws -> KVTransferCompletion
    ) async throws(KVTransportError) -> KVTransferReport
}

/// Lent to a producer during one transfer. Not for use from several tasks at once.
public final class KVOutboundTransfer {
    /// How the bytes travel (chosen at the handshake).
    public let transport: KVTransportKind
    let sendLayerBody: (Int, UnsafeRawBufferPointer) async throws(KVTransportError) -> Void

    init(transport: KVTransportKind, sendLayer: @escaping (Int, UnsafeRawBufferPointer) async throws(KVTransportError) -> Void) {
        self.transport = transport
        self.sendLayerBody = sendLayer
    }

    /// Sends layer `layer` (layers go in order 0..<layers; each has exactly `request.layerByteCount`
    /// bytes). Returns once the bytes are copied out of `bytes` and queued within the send buffer, so the
    /// producer can compute the next layer while this one drains; suspends while the buffer is full
    /// (flow-control backpressure). `bytes` need only stay valid during the call.
    public func send(layer: Int, bytes: UnsafeRawBufferPointer) async throws(KVTransportError) {
        try await sendLayerBody(layer, bytes)
    }

    public func send(layer: Int, bytes: [UInt8]) async throws(KVTransportError) {
        // Hold the array's storage for the whole (asynchronous) call.
        let copy = bytes
        let pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: copy.count, alignment: 16)
        defer { pointer.deallocate() }
        copy.withUnsafeBytes { pointer.copyMemory(from: $0) }
        try await sendLayerBody(layer, UnsafeRawBufferPointer(pointer))
    }
}

/// Deliberate faults a sender can inject, for tests of the receiver's defences over real transports.
public struct KVTransferFaults: Sendable, Equatable {
    /// Flip one bit of this layer's byte on the wire, after its checksum was computed.
    public var flipBit: (layer: Int, byteOffset: Int)?
    /// Cut the stream abruptly after sending this layer.
    public var truncateAfterLayer: Int?
    /// Go silent (send nothing more, keep the stream open) after this layer.
    public var stallAfterLayer: Int?

    public init(flipBit: (layer: Int, byteOffset: Int)? = nil, truncateAfterLayer: Int? = nil, stallAfterLayer: Int? = nil) {
        self.flipBit = flipBit
        self.truncateAfterLayer = truncateAfterLayer
        self.stallAfterLayer = stallAfterLayer
    }

    public static let none = KVTransferFaults()

    public static func == (a: Self, b: Self) -> Bool {
        a.flipBit?.layer == b.flipBit?.layer && a.flipBit?.byteOffset == b.flipBit?.byteOffset
            && a.truncateAfterLayer == b.truncateAfterLayer && a.stallAfterLayer == b.stallAfterLayer
    }
}
