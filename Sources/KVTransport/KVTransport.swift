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
    /// Optional zero-copy landing (the default returns nil): the memory `layer`'s bytes go to, so the
    /// HTTP/2 transports write each chunk straight there instead of into a staging buffer. Asked once per
    /// layer, before its first chunk. The memory then holds unverified bytes until `layerLanded(layer)`:
    /// nothing may read it before that call, and after a `fail` it must be discarded. Called from the
    /// transfer's task; it must not block.
    func landingZone(forLayer layer: Int) -> KVLandingZone?
    /// With a landing zone: every byte of `layer` is in it and matched its checksum. Called instead of
    /// `receiveLayer` for that layer. Throwing aborts the transfer (and `fail` follows).
    func layerLanded(_ layer: Int) async throws
}

extension KVInboundTransfer {
    public func landingZone(forLayer layer: Int) -> KVLandingZone? { nil }
    public func layerLanded(_ layer: Int) async throws {}
}

/// Where one layer's bytes land: writable regions taken in order, whose sizes add up to the layer's byte
/// count (one region for a contiguous buffer; one per KV block for a paged cache). The owner keeps the
/// memory alive and unread until the transfer ends; the transport writes nothing outside it.
public struct KVLandingZone: @unchecked Sendable {
    public var regions: [UnsafeMutableRawBufferPointer]

    public init(regions: [UnsafeMutableRawBufferPointer]) {
        self.regions = regions
    }

    public var byteCount: Int { regions.reduce(0) { $0 + $1.count } }
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
    let sendLayerBody: (Int, KVLayerBytes) async throws(KVTransportError) -> Void

    init(transport: KVTransportKind, sendLayer: @escaping (Int, KVLayerBytes) async throws(KVTransportError) -> Void) {
        self.transport = transport
        self.sendLayerBody = sendLayer
    }

    /// Sends layer `layer` (layers go in order 0..<layers; each has exactly `request.layerByteCount`
    /// bytes). Returns once the bytes are copied out of `bytes` and queued within the send buffer, so the
    /// producer can compute the next layer while this one drains; suspends while the buffer is full
    /// (flow-control backpressure). `bytes` need only stay valid during the call.
    public func send(layer: Int, bytes: UnsafeRawBufferPointer) async throws(KVTransportError) {
        try await sendLayerBody(layer, .pointer(bytes))
    }

    /// `send(layer:bytes:)` for bytes in an array (no copy is made of it: the value keeps it alive).
    public func send(layer: Int, bytes: [UInt8]) async throws(KVTransportError) {
        try await sendLayerBody(layer, .array(bytes))
    }

    /// `send(layer:bytes:)` for a layer whose bytes lie in several regions, taken in order (a paged KV
    /// cache's blocks): read in place, never gathered into one buffer first. The regions must stay valid
    /// and unchanged during the call.
    public func send(layer: Int, regions: [UnsafeRawBufferPointer]) async throws(KVTransportError) {
        try await sendLayerBody(layer, .regions(regions))
    }
}

/// A layer's bytes as a producer lent them: a pointer or regions valid during the `send` call, or an array.
enum KVLayerBytes {
    case pointer(UnsafeRawBufferPointer)
    case array([UInt8])
    case regions([UnsafeRawBufferPointer])

    var count: Int {
        switch self {
        case .pointer(let bytes): bytes.count
        case .array(let bytes): bytes.count
        case .regions(let regions): regions.reduce(0) { $0 + $1.count }
        }
    }

    /// Copies layer bytes `range` to `destination` (of the same size), adding them to `crc` in the
    /// same pass.
    func copy(_ range: Range<Int>, to destination: UnsafeMutableRawBufferPointer, checksumming crc: inout CRC32C) {
        precondition(destination.count == range.count && range.lowerBound >= 0 && range.upperBound <= count, "layer copy out of bounds")
        switch self {
        case .pointer(let bytes):
            crc.updateCopying(UnsafeRawBufferPointer(rebasing: bytes[range]), to: destination)
        case .array(let bytes):
            bytes.withUnsafeBytes { crc.updateCopying(UnsafeRawBufferPointer(rebasing: $0[range]), to: destination) }
        case .regions(let regions):
            var start = 0  // layer offset of the current region
            var written = 0
            for region in regions {
                let end = start + region.count
                defer { start = end }
                guard end > range.lowerBound + written, written < range.count else { continue }
                let from = range.lowerBound + written - start
                let take = min(region.count - from, range.count - written)
                crc.updateCopying(
                    UnsafeRawBufferPointer(rebasing: region[from..<from + take]),
                    to: UnsafeMutableRawBufferPointer(rebasing: destination[written..<written + take]))
                written += take
            }
        }
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
