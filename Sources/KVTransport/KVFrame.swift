import ClusterProtocol
import NIOCore
import SwiftProtobuf

/// One frame of a transfer stream (see `Protos/baton/v1/kv_transfer.proto`):
///
///     kind: UInt8 | headerLength: UInt32 BE | payloadLength: UInt32 BE | header (protobuf) | payload
enum KVFrame {
    static let prefixLength = 9
    /// Headers are small protobuf messages; anything bigger is a broken or hostile peer.
    static let maximumHeaderLength = 64 * 1024
    /// The completion's logits: 4 bytes per vocabulary entry, for vocabularies up to 4 M tokens.
    static let maximumLogitsPayloadLength = 16 << 20

    enum Kind: UInt8 {
        case handshake = 1, accept, chunk, layerReady, completion, result, error
    }

    /// Writes a frame whose payload is `payload` (copied once into `buffer`).
    static func write(
        _ kind: Kind, _ header: some SwiftProtobuf.Message, payload: UnsafeRawBufferPointer? = nil,
        into buffer: inout ByteBuffer
    ) throws(KVTransportError) {
        let headerBytes: [UInt8]
        do { headerBytes = try header.serializedBytes() } catch {
            throw KVTransportError(.invalidArgument, "could not encode a \(kind) frame", cause: error)
        }
        let payloadCount = payload?.count ?? 0
        buffer.reserveCapacity(minimumWritableBytes: prefixLength + headerBytes.count + payloadCount)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(UInt32(headerBytes.count))
        buffer.writeInteger(UInt32(payloadCount))
        buffer.writeBytes(headerBytes)
        if let payload { buffer.writeBytes(payload) }
    }

    /// Writes a chunk frame into `buffer` (cleared first), filling in `chunk.crc32C`: `copyPayload`
    /// copies the `payloadLength` bytes and checksums them in one pass, straight into their place behind
    /// room left for the header; the prefix and header then go in front of them (the buffer's readable
    /// bytes start there).
    static func writeChunk(
        _ chunk: inout Baton_V1_KVChunk, payloadLength: Int, into buffer: inout ByteBuffer,
        copyPayload: (UnsafeMutableRawBufferPointer, inout CRC32C) -> Void
    ) throws(KVTransportError) {
        chunk.crc32C = .max  // the widest varint: the header can only get shorter
        let room: Int
        do { room = prefixLength + (try chunk.serializedBytes() as [UInt8]).count } catch {
            throw KVTransportError(.invalidArgument, "could not encode a chunk frame", cause: error)
        }
        buffer.clear(minimumCapacity: room + payloadLength)
        buffer.moveWriterIndex(to: room)
        var crc = CRC32C()
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: payloadLength) { destination in
            copyPayload(UnsafeMutableRawBufferPointer(rebasing: destination[0..<payloadLength]), &crc)
            return payloadLength
        }
        chunk.crc32C = crc.value
        let headerBytes: [UInt8]
        do { headerBytes = try chunk.serializedBytes() } catch {
            throw KVTransportError(.invalidArgument, "could not encode a chunk frame", cause: error)
        }
        let start = room - prefixLength - headerBytes.count
        buffer.setInteger(Kind.chunk.rawValue, at: start)
        buffer.setInteger(UInt32(headerBytes.count), at: start + 1)
        buffer.setInteger(UInt32(payloadLength), at: start + 5)
        buffer.setBytes(headerBytes, at: start + prefixLength)
        buffer.moveReaderIndex(to: start)
    }

    static func buffer(
        _ kind: Kind, _ header: some SwiftProtobuf.Message, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(KVTransportError) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        try write(kind, header, into: &buffer)
        return buffer
    }

    static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from header: ByteBuffer) throws(KVTransportError) -> M {
        do {
            return try header.withUnsafeReadableBytes { try M(serializedBytes: Array($0)) }
        } catch {
            throw KVTransportError(.protocolViolation, "malformed \(M.protoMessageName) frame", cause: error)
        }
    }
}

/// Splits a stream of byte buffers into frames without copying payloads: a frame's header is gathered
/// (it is small), its payload is handed on piece by piece as it arrives. Pull-style, so the caller may
/// `await` between events.
struct KVFrameDecoder {
    enum Event {
        /// A frame begins. `header` holds its whole protobuf header; `payloadLength` bytes follow.
        case frame(KVFrame.Kind, header: ByteBuffer, payloadLength: Int)
        /// The next piece of the current frame's payload (a view into the input).
        case payload(ByteBuffer)
        /// The current chunk or completion frame's payload is complete (also sent for an empty payload).
        case payloadEnd
    }

    private enum State {
        case prefix
        case header(kind: KVFrame.Kind, headerLength: Int, payloadLength: Int)
        case payload(remaining: Int)
        case payloadEnd
    }

    private var state: State = .prefix
    private var pending = ByteBuffer()
    private let maximumPayloadLength: Int

    init(maximumPayloadLength: Int) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    /// True between frames: the stream may end here without losing anything.
    var isAtFrameBoundary: Bool {
        if case .prefix = state { return pending.readableBytes == 0 }
        return false
    }

    /// The next event from `input`, or nil when `input` is used up (keep feeding new input).
    mutating func next(_ input: inout ByteBuffer) throws(KVTransportError) -> Event? {
        while true {
            switch state {
            case .prefix:
                guard var prefix = gather(KVFrame.prefixLength, from: &input) else { return nil }
                let rawKind = prefix.readInteger(as: UInt8.self)!
                let headerLength = Int(prefix.readInteger(as: UInt32.self)!)
                let payloadLength = Int(prefix.readInteger(as: UInt32.self)!)
                guard let kind = KVFrame.Kind(rawValue: rawKind) else {
                    throw KVTransportError(.protocolViolation, "unknown frame kind \(rawKind)")
                }
                guard headerLength <= KVFrame.maximumHeaderLength else {
                    throw KVTransportError(.protocolViolation, "frame header of \(headerLength) bytes exceeds \(KVFrame.maximumHeaderLength)")
                }
                let limit = switch kind {
                case .chunk: maximumPayloadLength
                case .completion: KVFrame.maximumLogitsPayloadLength
                default: 0
                }
                guard payloadLength <= limit else {
                    throw KVTransportError(.protocolViolation, "\(kind) frame with a payload of \(payloadLength) bytes (limit \(limit))")
                }
                state = .header(kind: kind, headerLength: headerLength, payloadLength: payloadLength)
            case .header(let kind, let headerLength, let payloadLength):
                guard let header = gather(headerLength, from: &input) else { return nil }
                if payloadLength > 0 {
                    state = .payload(remaining: payloadLength)
                } else {
                    state = kind == .chunk || kind == .completion ? .payloadEnd : .prefix
                }
                return .frame(kind, header: header, payloadLength: payloadLength)
            case .payload(let remaining):
                guard input.readableBytes > 0 else { return nil }
                let take = min(remaining, input.readableBytes)
                let piece = input.readSlice(length: take)!
                state = take == remaining ? .payloadEnd : .payload(remaining: remaining - take)
                return .payload(piece)
            case .payloadEnd:
                state = .prefix
                return .payloadEnd
            }
        }
    }

    /// Returns `count` bytes once they are all available, keeping partial input in `pending`.
    private mutating func gather(_ count: Int, from input: inout ByteBuffer) -> ByteBuffer? {
        if pending.readableBytes == 0, input.readableBytes >= count {
            return input.readSlice(length: count)
        }
        let need = count - pending.readableBytes
        let take = min(need, input.readableBytes)
        if take > 0, var piece = input.readSlice(length: take) { pending.writeBuffer(&piece) }
        guard pending.readableBytes == count else { return nil }
        defer { pending = ByteBuffer() }
        return pending
    }
}

typealias SwiftProtobufMessage = SwiftProtobuf.Message
