import Foundation
import NIOCore
import RPC
import Synchronization
import Testing

/// The listener every process serves its peers on, over real mutual-TLS sockets.
@Suite("Node server and client")
struct NodeServerTests {
    static let authority = Result { try ClusterCertificates.makeAuthority() }

    static func tls(_ node: String, _ roles: Set<NodeRole>) throws -> NodeTLS {
        let authority = try authority.get()
        return ClusterCertificates.tls(
            node: try ClusterCertificates.issueNode(node, roles: roles, authority: authority), authorityPEM: authority.certificatePEM)
    }

    /// Serves `routes` as placement node "server", runs `body` with a client holding `client`'s certificate, closes
    /// everything.
    static func serving(
        _ routes: NodeRoutes, client identity: NodeIdentity = NodeIdentity(name: "client", roles: [.router]),
        expecting: PeerExpectation = .node("server", as: .placement), _ body: (NodeClient) async throws -> Void
    ) async throws {
        let server = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: try tls("server", [.placement]), routes: routes)
        let running = Task { await server.run() }
        let client = try await NodeClient.connect(
            host: "127.0.0.1", port: server.port, tls: try tls(identity.name, identity.roles), expecting: expecting)
        do { try await body(client) } catch {
            await client.close()
            await server.close()
            running.cancel()
            throw error
        }
        await client.close()
        await server.close()
        running.cancel()
    }

    @Test("a unary route answers with its status and body; an unknown path is a 404")
    func unary() async throws {
        var routes = NodeRoutes()
        routes.on("/echo", allow: .anyNode) { request, writer in
            try await writer.respond(status: 201, body: request.body.reversed())
        }
        try await Self.serving(routes) { client in
            let answer = try await client.call("/echo", body: [1, 2, 3], timeout: .seconds(5))
            #expect(answer.status == 201 && answer.body == [3, 2, 1])
            #expect(try await client.call("/nothing", timeout: .seconds(5)).status == 404)
        }
    }

    @Test("a streamed answer's keep-alives fill the silences and never reach the client as messages")
    func keepAlives() async throws {
        let sent = Mutex(0)
        var routes = NodeRoutes()
        routes.on("/slow", allow: .anyNode) { _, writer in
            try await writer.startStream(keepAlive: .milliseconds(50))
            try await writer.send([1])
            // Silence three times longer than the client's idle timeout: only keep-alives keep it open.
            try await Task.sleep(for: .milliseconds(600))
            try await writer.send([2])
            sent.withLock { $0 += 2 }
        }
        try await Self.serving(routes) { client in
            let stream = try await client.stream("/slow", body: [], idleTimeout: .milliseconds(200))
            #expect(stream.status == 200)
            var messages: [[UInt8]] = []
            for try await message in stream.messages { messages.append(message) }
            #expect(messages == [[1], [2]])
            #expect(sent.withLock { $0 } == 2)
        }
    }

    @Test("without keep-alives, a silent stream ends with a timeout at the client")
    func silenceTimesOut() async throws {
        var routes = NodeRoutes()
        routes.on("/silent", allow: .anyNode) { _, writer in
            try await writer.startStream()
            try await Task.sleep(for: .seconds(3))
        }
        try await Self.serving(routes) { client in
            let stream = try await client.stream("/silent", body: [], idleTimeout: .milliseconds(200))
            let error = await #expect(throws: RPCError.self) { for try await _ in stream.messages {} }
            #expect(error?.code == .timeout)
        }
    }

    @Test("a stream route gets the raw stream both ways")
    func streamRoute() async throws {
        var routes = NodeRoutes()
        routes.onStream("/raw", allow: .anyNode) { io in
            var received: [UInt8] = []
            while let buffer = try? await io.read() { received += buffer.readableBytesView }
            try? await io.write(ByteBuffer(bytes: received.reversed()), endStream: true)
        }
        #expect(routes.paths == ["/raw"])
        try await Self.serving(routes) { client in
            let answer = try await client.call("/raw", body: Array("hello".utf8), timeout: .seconds(5))
            #expect(answer.status == 200)
            #expect(String(decoding: answer.body, as: UTF8.self) == "olleh")
        }
    }

    @Test("a route answers 403 naming the rule to a peer whose certificate lacks the role, and tells the handler who called")
    func roleRefusal() async throws {
        var routes = NodeRoutes()
        routes.on("/routers-only", allow: .roles([.router])) { request, writer in
            try await writer.respond(status: 200, body: Array((request.peer.name ?? "?").utf8))
        }
        try await Self.serving(routes, client: NodeIdentity(name: "decode-7", roles: [.decode])) { client in
            let answer = try await client.call("/routers-only", timeout: .seconds(5))
            #expect(answer.status == 403)
            #expect(answer.bodyText.contains(#""code":"forbidden""#))
            #expect(answer.bodyText.contains("only router nodes may call this; the certificate allows decode"))
        }
        try await Self.serving(routes, client: NodeIdentity(name: "router-2", roles: [.router])) { client in
            let answer = try await client.call("/routers-only", timeout: .seconds(5))
            #expect(answer.status == 200 && answer.bodyText == "router-2")
        }
    }

    @Test("a stream route refuses a peer without the role before its handler runs")
    func streamRouteRefusal() async throws {
        let ran = Mutex(false)
        var routes = NodeRoutes()
        routes.onStream("/kv", allow: .roles([.prefill])) { _ in ran.withLock { $0 = true } }
        try await Self.serving(routes, client: NodeIdentity(name: "router", roles: [.router])) { client in
            let answer = try await client.call("/kv", body: [1], timeout: .seconds(5))
            #expect(answer.status == 403)
        }
        #expect(ran.withLock { $0 } == false)
    }

    @Test("a client refuses a server whose certificate names another node, before sending anything")
    func clientChecksServerName() async throws {
        let reached = Mutex(false)
        var routes = NodeRoutes()
        routes.on("/secret", allow: .anyNode) { _, writer in
            reached.withLock { $0 = true }
            try await writer.respond(status: 200, body: [])
        }
        try await Self.serving(routes, expecting: .node("decode-0", as: .decode)) { client in
            let error = await #expect(throws: RPCError.self) {
                try await client.call("/secret", body: Array("my bank PIN".utf8), timeout: .seconds(5))
            }
            #expect(error?.code == .forbidden)
            #expect(error?.message.hasSuffix(
                "presents the certificate of server (placement), not of decode node decode-0: refusing to talk to it") == true)
        }
        try await Self.serving(routes, expecting: .role(.router)) { client in
            let error = await #expect(throws: RPCError.self) { try await client.call("/secret", timeout: .seconds(5)) }
            #expect(error?.message.hasSuffix("which may not act as router") == true)
        }
        #expect(reached.withLock { $0 } == false)
    }
}
