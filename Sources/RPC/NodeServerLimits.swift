import NIOCore
import Synchronization

/// What a node's listener allows each connection and peer before it closes the door. Every number bounds what a
/// peer can hold without doing useful work: a socket that never finishes its TLS handshake, a connection left
/// open and silent, a request body sent a byte at a time.
public struct NodeServerLimits: Sendable, Equatable {
    /// A new connection must finish its TLS handshake and send the HTTP/2 preface and SETTINGS within this.
    /// Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection that carried no byte either way for this long is closed (clients reconnect on their next
    /// call; long streams send keep-alives well inside it). Default 60 s.
    public var idleConnectionTimeout: Duration = .seconds(60)
    /// Open connections in all. Default 1024.
    public var maximumConnections = 1024
    /// Open connections from one IP address. Default 64 (a router keeps one per worker and expectation).
    public var maximumConnectionsPerPeer = 64
    /// Request bodies being read at once on one connection, bytes. Default 64 MiB.
    public var maximumBufferedBytesPerConnection = 64 << 20
    /// A request body must deliver at least this many bytes in every idle-timeout window (or end): a byte every
    /// few seconds does not keep a stream alive. Default 4 KiB.
    public var minimumProgressBytes = 4096

    public init() {}
}

/// Open connections per peer address and in total, against two caps; every listener (the nodes' and the
/// router's public one) counts through one. Thread-safe.
public final class ConnectionCounter: Sendable {
    private let counts = Mutex<(total: Int, byPeer: [String: Int])>((0, [:]))
    public let maximumConnections: Int
    public let maximumPerAddress: Int

    public init(maximumConnections: Int, maximumPerAddress: Int) {
        self.maximumConnections = maximumConnections
        self.maximumPerAddress = maximumPerAddress
    }

    convenience init(limits: NodeServerLimits) {
        self.init(maximumConnections: limits.maximumConnections, maximumPerAddress: limits.maximumConnectionsPerPeer)
    }

    /// Counts a connection from `peer` in, or says why it is refused.
    public func admit(_ peer: String) -> String? {
        counts.withLock { counts in
            guard counts.total < maximumConnections else {
                return "\(counts.total) connections are open, the most allowed"
            }
            let mine = counts.byPeer[peer, default: 0]
            guard mine < maximumPerAddress else {
                return "\(peer) has \(mine) connections open, the most one address may"
            }
            counts.total += 1
            counts.byPeer[peer] = mine + 1
            return nil
        }
    }

    public func release(_ peer: String) {
        counts.withLock { counts in
            counts.total -= 1
            let left = counts.byPeer[peer, default: 1] - 1
            counts.byPeer[peer] = left > 0 ? left : nil
        }
    }
}

/// Bytes of request bodies one connection has buffered, against its cap. Thread-safe.
final class ConnectionBudget: Sendable {
    private let used = Mutex(0)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Takes `bytes` from the budget; false (taking nothing) when that would pass the cap.
    func take(_ bytes: Int) -> Bool {
        used.withLock { used in
            guard used + bytes <= limit else { return false }
            used += bytes
            return true
        }
    }

    func give(_ bytes: Int) {
        used.withLock { $0 -= bytes }
    }
}

/// The first handler of every accepted connection: closes it unless the TLS handshake and the HTTP/2 preface
/// (the 24-byte magic and a 9-byte SETTINGS frame header) arrive within `handshakeTimeout`, and closes it once
/// it has been silent both ways for `idleConnectionTimeout`. Placed after the TLS handler, so it counts only
/// bytes that passed the handshake. Event-loop confined.
final class ConnectionDeadlines: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The HTTP/2 client preface plus one frame header.
    static let prefaceBytes = 24 + 9

    private let limits: NodeServerLimits
    private let onTimeout: @Sendable (String) -> Void
    private var received = 0
    private var handshake: Scheduled<Void>?
    private var idle: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()

    init(limits: NodeServerLimits, onTimeout: @escaping @Sendable (String) -> Void) {
        self.limits = limits
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard handshake == nil else { return }
        let loop = context.eventLoop
        let channel = context.channel
        let seconds = limits.handshakeTimeout / .seconds(1)
        let report = onTimeout
        handshake = loop.scheduleTask(in: .nanoseconds(limits.handshakeTimeout.timeAmountNanoseconds)) {
            report("no TLS handshake and HTTP/2 preface within \(seconds) s")
            channel.close(promise: nil)
        }
        scheduleIdleCheck(context, in: limits.idleConnectionTimeout)
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, in delay: Duration) {
        let timeout = TimeAmount.nanoseconds(limits.idleConnectionTimeout.timeAmountNanoseconds)
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        idle = context.eventLoop.scheduleTask(in: .nanoseconds(delay.timeAmountNanoseconds)) {
            let (handler, context) = bound.value
            let silent = NIODeadline.now() - handler.lastActivity
            if silent >= timeout {
                handler.onTimeout("silent for \(handler.limits.idleConnectionTimeout / .seconds(1)) s")
                context.close(promise: nil)
            } else {
                handler.scheduleIdleCheck(context, in: .nanoseconds(Int64((timeout - silent).nanoseconds)))
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = .now()
        if handshake != nil {
            received += unwrapInboundIn(data).readableBytes
            if received >= Self.prefaceBytes {
                handshake?.cancel()
                handshake = nil
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake?.cancel()
        idle?.cancel()
        context.fireChannelInactive()
    }
}
