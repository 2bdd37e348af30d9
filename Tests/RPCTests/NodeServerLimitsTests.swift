import Foundation
import NIOCore
import NIOHTTP2
import NIOPosix
import RPC
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The listener's doors under slow, silent and greedy peers, over real sockets.
@Suite("Node server limits")
struct NodeServerLimitsTests {
    /// A TLS listener on 127.0.0.1 with `limits`, an echo route, for `body`.
    static func serving(
        _ limits: NodeServerLimits, idleTimeout: Duration = .seconds(10), _ body: (NodeServer) async throws -> Void
    ) async throws {
        var routes = NodeRoutes()
        routes.on("/echo", allow: .anyNode) { request, writer in try await writer.respond(status: 200, body: request.body) }
        let server = try await NodeServer.bind(
            host: "127.0.0.1", port: 0, tls: try NodeServerTests.tls("server", [.placement]), routes: routes,
            idleTimeout: idleTimeout, limits: limits)
        let running = Task { await server.run() }
        defer { running.cancel() }
        do { try await body(server) } catch {
            await server.close()
            throw error
        }
        await server.close()
    }

    /// A raw TCP socket to `port` that sends `bytes`, then how long until the server closed it (nil: still open
    /// after `wait`).
    static func closedAfter(port: Int, sending bytes: [UInt8], wait: Duration) throws -> Duration? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        if !bytes.isEmpty { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }
        let start = ContinuousClock.now
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now - start < wait {
            let got = recv(fd, &buffer, buffer.count, 0)
            if got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { return ContinuousClock.now - start }
        }
        return nil
    }

    @Test("a raw TCP connection that never starts TLS is closed after the handshake timeout")
    func silentSocketIsClosed() async throws {
        var limits = NodeServerLimits()
        limits.handshakeTimeout = .milliseconds(300)
        try await Self.serving(limits) { server in
            let closed = try Self.closedAfter(port: server.port, sending: [], wait: .seconds(5))
            #expect(closed != nil, "the silent socket was still open after 5 s")
        }
    }

    @Test("a partial ClientHello is closed after the handshake timeout")
    func partialClientHello() async throws {
        var limits = NodeServerLimits()
        limits.handshakeTimeout = .milliseconds(300)
        try await Self.serving(limits) { server in
            // A TLS record header announcing a 512-byte handshake message, and only 4 bytes of it.
            let closed = try Self.closedAfter(port: server.port, sending: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], wait: .seconds(5))
            #expect(closed != nil, "the half-sent ClientHello was still open after 5 s")
        }
    }

    @Test("many idle sockets beyond the per-address cap are refused, and a connection silent past the idle bound is closed")
    func connectionCapsAndIdle() async throws {
        var limits = NodeServerLimits()
        limits.maximumConnectionsPerPeer = 2
        limits.idleConnectionTimeout = .milliseconds(500)
        try await Self.serving(limits) { server in
            let tls = try NodeServerTests.tls("client", [.router])
            var clients: [NodeClient] = []
            for _ in 0..<2 {
                let client = try await NodeClient.connect(host: "127.0.0.1", port: server.port, tls: tls, expecting: .anyNode)
                #expect(try await client.call("/echo", body: [1], timeout: .seconds(5)).status == 200)
                clients.append(client)
            }
            let third = try await NodeClient.connect(host: "127.0.0.1", port: server.port, tls: tls, expecting: .anyNode)
            await #expect(throws: RPCError.self) { try await third.call("/echo", body: [1], timeout: .seconds(5)) }
            await third.close()
            // Silent connections are closed by the server; the slots free up.
            try await Task.sleep(for: .seconds(2))
            #expect(clients.allSatisfy { !$0.isActive })
            let fresh = try await NodeClient.connect(host: "127.0.0.1", port: server.port, tls: tls, expecting: .anyNode)
            #expect(try await fresh.call("/echo", body: [2], timeout: .seconds(5)).status == 200)
            await fresh.close()
            for client in clients { await client.close() }
        }
    }

    @Test("a request body trickled a byte at a time is cut off: progress is bytes per window, not any byte")
    func slowBodyIsCutOff() async throws {
        var limits = NodeServerLimits()
        limits.minimumProgressBytes = 1024
        try await Self.serving(limits, idleTimeout: .milliseconds(400)) { server in
            let connected = try await NodeClient.connectHTTP2(
                host: "127.0.0.1", port: server.port,
                sslContext: try NodeServerTests.tls("client", [.router]).makeClientContext(), expecting: .anyNode,
                http2: NodeServer.defaultHTTP2, connectTimeout: .seconds(5), group: MultiThreadedEventLoopGroup.singleton)
            defer { connected.channel.close(promise: nil) }
            let stream = try await connected.multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture { try HTTP2StreamChannel(wrappingChannelSynchronously: channel) }
            }
            let started = ContinuousClock.now
            let outcome: String = try await stream.executeThenClose { inbound, outbound in
                try await outbound.write(.headers(.init(headers: [
                    ":method": "POST", ":path": "/echo", ":scheme": "https", ":authority": "test",
                ])))
                let writer = Task {
                    // One byte every 100 ms: each arrives well inside the 400 ms window, but 4 bytes a window is
                    // far below the 1 KiB it must bring.
                    for _ in 0..<100 {
                        try await outbound.write(.data(.init(data: .byteBuffer(ByteBuffer(bytes: [7])))))
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                defer { writer.cancel() }
                do {
                    for try await payload in inbound {
                        if case .headers(let headers) = payload { return headers.headers.first(name: ":status") ?? "?" }
                        if case .rstStream = payload { return "reset" }
                    }
                    return "ended"
                } catch {
                    return "reset"
                }
            }
            #expect(outcome == "reset" || outcome == "ended", "the trickled request got \(outcome)")
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }
}
