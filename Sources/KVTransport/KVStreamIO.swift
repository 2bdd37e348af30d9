import NIOCore
import RPC

/// One bidirectional byte stream carrying a transfer's frames (an HTTP/2 stream, or an in-memory pipe).
/// Used by one task at a time, except `abort`, which any task may call.
protocol KVStreamIO: AnyObject {
    /// The next bytes from the peer; nil once the peer ended its side. Throws when the stream broke.
    func read() async throws -> ByteBuffer?
    /// Queues `buffer`; suspends while the send buffer is full. `endStream` ends this side.
    func write(_ buffer: ByteBuffer, endStream: Bool) async throws
    /// Queues `buffers` in order and sends them together (one flush).
    func write(contentsOf buffers: [ByteBuffer]) async throws
    /// Closes both directions at once (the peer sees a reset); wakes pending reads and writes.
    var abort: @Sendable () -> Void { get }
    /// Like `abort`, but first sends `finalFrame` and ends this side, so the peer learns why (used when
    /// a timeout fires while this side is blocked reading).
    func abort(sendingFirst finalFrame: ByteBuffer) -> @Sendable () -> Void
    var allocator: ByteBufferAllocator { get }
    /// The sending node as its certificate proves (`.unauthenticated` in insecure mode and in-memory pipes).
    var peer: NodePeer { get }
}

extension KVStreamIO {
    func write(contentsOf buffers: [ByteBuffer]) async throws {
        for buffer in buffers { try await write(buffer, endStream: false) }
    }
}

extension HTTP2StreamIO: KVStreamIO {}
