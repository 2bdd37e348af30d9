import NIOCore
import NIOHTTP2
import Synchronization

public typealias HTTP2StreamChannel = NIOAsyncChannel<HTTP2Frame.FramePayload, HTTP2Frame.FramePayload>

/// Bytes over one HTTP/2 stream, for a route that streams both ways (a KV transfer): DATA frames carry them,
/// the HEADERS are sent first. Used by one task at a time, except `abort`.
public final class HTTP2StreamIO: @unchecked Sendable {
    private var iterator: NIOAsyncChannelInboundStream<HTTP2Frame.FramePayload>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>
    private let channel: any Channel
    private var headers: HTTP2Frame.FramePayload.Headers?
    /// Whether our HEADERS went out; read by the timeout path on another thread.
    private let headersSent = Atomic<Bool>(false)
    private let initialHeaders: HTTP2Frame.FramePayload.Headers
    private var ended = false
    /// Who is on the other end, set by the listener before a stream route runs (a client's own streams keep
    /// `.unauthenticated`: the client checked the server during the handshake instead).
    public internal(set) var peer: NodePeer = .unauthenticated
    /// Headers the peer sent first (request or response).
    public private(set) var peerHeaders: HTTP2Frame.FramePayload.Headers?

    public init(
        inbound: NIOAsyncChannelInboundStream<HTTP2Frame.FramePayload>,
        outbound: NIOAsyncChannelOutboundWriter<HTTP2Frame.FramePayload>, channel: any Channel, headers: HTTP2Frame.FramePayload.Headers
    ) {
        self.iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.channel = channel
        self.headers = headers
        self.initialHeaders = headers
    }

    public var allocator: ByteBufferAllocator { channel.allocator }

    /// Waits for the peer's HEADERS frame.
    public func readHeaders() async throws -> HTTP2Frame.FramePayload.Headers? {
        while peerHeaders == nil {
            guard let payload = try await iterator.next() else { return nil }
            if case .headers(let h) = payload {
                peerHeaders = h
                if h.endStream { ended = true }
            }
        }
        return peerHeaders
    }

    public func read() async throws -> ByteBuffer? {
        while !ended {
            guard let payload = try await iterator.next() else { return nil }
            switch payload {
            case .data(let data):
                if data.endStream { ended = true }
                if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 { return buffer }
            case .headers(let h):
                if peerHeaders == nil { peerHeaders = h }
                if h.endStream { ended = true }
            case .rstStream(let code):
                throw RPCError(.truncated, "peer reset the stream (\(code))")
            default:
                continue
            }
        }
        return nil
    }

    public func write(_ buffer: ByteBuffer, endStream: Bool) async throws {
        if let headers {
            self.headers = nil
            headersSent.store(true, ordering: .sequentiallyConsistent)
            try await outbound.write(.headers(headers))
        }
        try await outbound.write(.data(.init(data: .byteBuffer(buffer), endStream: endStream)))
    }

    /// One DATA frame per buffer, flushed together: a frame then ends mid-flush, where the peer's
    /// HTTP/2 parser (NIOHTTP2) carries on without copying; at a flush's end it copies the next read.
    public func write(contentsOf buffers: [ByteBuffer]) async throws {
        if let headers {
            self.headers = nil
            headersSent.store(true, ordering: .sequentiallyConsistent)
            try await outbound.write(.headers(headers))
        }
        try await outbound.write(contentsOf: buffers.map { .data(.init(data: .byteBuffer($0), endStream: false)) })
    }

    public func abort(sendingFirst finalFrame: ByteBuffer) -> @Sendable () -> Void {
        let channel = self.channel
        let headers = self.initialHeaders
        return { [self] in
            // Only the atomic is touched off the owning task.
            let needHeaders = !headersSent.exchange(true, ordering: .sequentiallyConsistent)
            channel.eventLoop.execute {
                if needHeaders { channel.write(HTTP2Frame.FramePayload.headers(headers), promise: nil) }
                channel.writeAndFlush(
                    HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(finalFrame), endStream: true))
                ).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    public var abort: @Sendable () -> Void {
        let channel = self.channel
        return { channel.close(promise: nil) }
    }
}
