import Logging
import NIOCore
import NIOHTTPTypes
import RPC

/// Bounds what an API client connection may hold without doing useful work. Hummingbird's idle timeout restarts at
/// every byte, so a client sending a request head a byte every few seconds would keep its connection (and a
/// slot) forever: here a connection must deliver each whole request, head and body, within `requestReadTimeout`
/// of being ready for it (opened, or the previous response sent), and connections count against the caps of
/// `counter` per client address and in total. Sits after the HTTP/1 codec; event-loop confined.
final class ClientConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let counter: ConnectionCounter
    private let requestReadTimeout: Duration
    private let logger: Logger
    private var started = false
    private var deadline: Scheduled<Void>?
    /// Requests read whole whose responses have not ended (a pipelining client may send the next one early).
    private var answering = 0

    init(counter: ConnectionCounter, requestReadTimeout: Duration, logger: Logger) {
        self.counter = counter
        self.requestReadTimeout = requestReadTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        let address = context.channel.remoteAddress?.ipAddress ?? "an unknown address"
        if let refusal = counter.admit(address) {
            logger.warning("refused an API connection from \(address): \(refusal)")
            context.close(promise: nil)
            return
        }
        let counter = self.counter
        context.channel.closeFuture.whenComplete { _ in counter.release(address) }
        arm(context)
    }

    /// Starts the wait for the next whole request.
    private func arm(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let channel = context.channel, logger = self.logger
        let seconds = Double(requestReadTimeout.components.seconds) + Double(requestReadTimeout.components.attoseconds) / 1e18
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
            let address = channel.remoteAddress?.ipAddress ?? "an unknown address"
            logger.notice("closed the API connection from \(address): no whole request within \(seconds) s")
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) {
            answering += 1
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let ended = if case .end = unwrapOutboundIn(data) { true } else { false }
        context.write(data, promise: promise)
        guard ended else { return }
        answering = max(0, answering - 1)
        // Only an idle connection waits for its next request under the bound; one still answering does not.
        if answering == 0 { arm(context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
