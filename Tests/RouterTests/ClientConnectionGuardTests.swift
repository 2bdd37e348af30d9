import Foundation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The API port under slow and greedy clients, over real sockets.
@Suite("API client connection limits", .serialized)
struct ClientConnectionGuardTests {
    static let healthBody = #"{"status":"ok"}"#

    /// A blocking TCP socket from `source` (any loopback address) to 127.0.0.1:`port`, with a 100 ms receive timeout.
    final class RawSocket {
        let fd: Int32

        init(port: Int, from source: String = "127.0.0.1") throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, connected == 0 else { throw POSIXError(.ECONNREFUSED) }
            var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        func send(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

        /// Reads for up to `wait` (or until what arrived contains `until`): whether the server closed the
        /// connection, and what it sent.
        func read(for wait: Duration, until: String? = nil) -> (closed: Bool, received: String) {
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let start = ContinuousClock.now
            while ContinuousClock.now - start < wait {
                let got = recv(fd, &buffer, buffer.count, 0)
                if got > 0 {
                    received += buffer[..<got]
                    if let until, String(decoding: received, as: UTF8.self).contains(until) { break }
                    continue
                }
                if got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { return (true, String(decoding: received, as: UTF8.self)) }
            }
            return (false, String(decoding: received, as: UTF8.self))
        }
    }

    @Test("a client that sends its request head a byte at a time is closed after the request read timeout")
    func dribbledHeadIsClosed() async throws {
        var configuration = Fixtures.configuration()
        configuration.requestReadTimeout = .milliseconds(800)
        let (app, _, _) = try Fixtures.application(configuration: configuration)
        try await app.test(.live) { client in
            let socket = try RawSocket(port: try #require(client.port))
            let head = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + String(repeating: "a", count: 200)
            var closedAt: Duration?
            let start = ContinuousClock.now
            // Each byte well inside the idle timeout: only the whole-request bound can end this.
            for byte in head {
                socket.send(String(byte))
                if socket.read(for: .milliseconds(50)).closed {
                    closedAt = ContinuousClock.now - start
                    break
                }
            }
            let elapsed = try #require(closedAt, "the dribbling client was still connected after \(ContinuousClock.now - start)")
            #expect(elapsed >= .milliseconds(700) && elapsed < .seconds(5), "closed after \(elapsed)")
            // A prompt client on a fresh connection is served.
            let prompt = try RawSocket(port: try #require(client.port))
            prompt.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(prompt.read(for: .seconds(5), until: Self.healthBody).received.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test("a kept-alive connection gets the read timeout afresh for each request")
    func keepAliveRearms() async throws {
        var configuration = Fixtures.configuration()
        configuration.requestReadTimeout = .seconds(2)
        let (app, _, _) = try Fixtures.application(configuration: configuration)
        try await app.test(.live) { client in
            let socket = try RawSocket(port: try #require(client.port))
            // About a second from each response to the next request, three in all: longer than one bound.
            for _ in 0..<3 {
                try await Task.sleep(for: .seconds(1))
                socket.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                let (closed, received) = socket.read(for: .seconds(5), until: Self.healthBody)
                #expect(!closed && received.hasPrefix("HTTP/1.1 200"), "closed: \(closed), got: \(received.prefix(300))")
            }
            // Then silent past the bound: closed.
            #expect(socket.read(for: .seconds(6)).closed)
        }
    }

    @Test("a pipelined second request that streams longer than the read timeout is not cut off")
    func pipelinedRequests() async throws {
        var configuration = Fixtures.configuration()
        configuration.requestReadTimeout = .milliseconds(500)
        let (app, _, _) = try Fixtures.application(
            backend: { FakeBackend(tokenizer: $0, delay: .milliseconds(60)) }, configuration: configuration)
        try await app.test(.live) { client in
            let socket = try RawSocket(port: try #require(client.port))
            // Two requests in one write: a quick one, then one that streams for well over the bound behind it.
            let body = try String(decoding: jsonBody(ChatCompletionsTests.chatBody(["stream": true, "max_tokens": 16])).readableBytesView, as: UTF8.self)
            let chat = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            socket.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" + chat)
            let (_, received) = socket.read(for: .seconds(10), until: "[DONE]")
            #expect(received.contains("[DONE]") && received.contains(Self.healthBody), "got: \(received.suffix(200))")
        }
    }

    @Test("connections beyond the per-client cap are closed on accept, other clients are served, and room frees when one closes")
    func perClientCap() async throws {
        var configuration = Fixtures.configuration()
        configuration.maximumConnectionsPerClient = 2
        let (app, _, _) = try Fixtures.application(configuration: configuration)
        try await app.test(.live) { client in
            // One client at 127.0.0.2 (the test client itself talks from 127.0.0.1).
            let port = try #require(client.port)
            var held = [try RawSocket(port: port, from: "127.0.0.2"), try RawSocket(port: port, from: "127.0.0.2")]
            let extra = try RawSocket(port: port, from: "127.0.0.2")
            #expect(extra.read(for: .seconds(2)).closed, "a third connection from one address was kept")
            for socket in held { #expect(!socket.read(for: .milliseconds(200)).closed, "the first two stay open") }
            let other = try RawSocket(port: port, from: "127.0.0.3")
            other.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(other.read(for: .seconds(5), until: Self.healthBody).received.hasPrefix("HTTP/1.1 200"), "another address is served")
            held.removeFirst()
            try await Task.sleep(for: .milliseconds(200))
            let next = try RawSocket(port: port, from: "127.0.0.2")
            next.send("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            let (_, received) = next.read(for: .seconds(5), until: Self.healthBody)
            #expect(received.hasPrefix("HTTP/1.1 200"), "got: \(received.prefix(40))")
            _ = held
        }
    }

    @Test("limits that cannot work are refused, naming the setting")
    func invalidLimits() throws {
        var configuration = Fixtures.configuration()
        configuration.maximumConnections = 4
        configuration.maximumConnectionsPerClient = 8
        let error = #expect(throws: RouterError.self) { try configuration.validate() }
        #expect(error?.message.contains("maximumConnectionsPerClient") == true)
        configuration.maximumConnectionsPerClient = 4
        configuration.requestReadTimeout = .zero
        #expect(throws: RouterError.self) { try configuration.validate() }
    }
}
