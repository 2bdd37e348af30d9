import Foundation
import NIOSSL
@testable import RPC
import Testing

/// Joining over real TLS sockets: a listener serving the join routes beside a route for cluster nodes, and the
/// client that has no certificate yet.
@Suite("Joining the cluster")
struct JoinServiceTests {
    static let authority = Result { try ClusterCertificates.makeAuthority() }

    static func service(reserved: Set<String> = []) throws -> JoinService {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-join-\(UUID().uuidString)").path
        return try JoinService(authority: try authority.get(), store: JoinTokenStore(directory: directory), reservedNames: reserved)
    }

    /// Serves the join routes and `/v1/cluster/status` (cluster nodes only) as placement node "placement".
    static func serving(_ service: JoinService, _ body: (Int) async throws -> Void) async throws {
        var routes = service.routes
        routes.on("/v1/cluster/status", allow: .anyNode) { _, writer in try await writer.respond(status: 200, body: []) }
        let authority = try authority.get()
        let tls = ClusterCertificates.tls(
            node: try ClusterCertificates.issueNode("placement", roles: [.placement], authority: authority),
            authorityPEM: authority.certificatePEM)
        let server = try await NodeServer.bind(host: "127.0.0.1", port: 0, tls: tls, routes: routes)
        let running = Task { await server.run() }
        defer { running.cancel() }
        do { try await body(server.port) } catch {
            await server.close()
            throw error
        }
        await server.close()
    }

    static func token(_ service: JoinService, roles: Set<NodeRole> = [.decode]) throws -> JoinToken {
        let fingerprint = try ClusterCertificates.fingerprint(certificatePEM: try authority.get().certificatePEM)
        return try service.store.create(roles: roles, ttl: 600, authorityFingerprint: fingerprint).token
    }

    @Test("a box without a certificate joins with a token and gets a certificate for its own key, name and roles")
    func joins() async throws {
        let service = try Self.service()
        let token = try Self.token(service, roles: [.decode, .prefill])
        try await Self.serving(service) { port in
            let joined = try await JoinClient.join(host: "127.0.0.1", port: port, token: token, name: "gpu-a", roles: [.decode])
            #expect(joined.identity == NodeIdentity(name: "gpu-a", roles: [.decode]))
            #expect(joined.authorityPEM == (try Self.authority.get().certificatePEM))
            // The joined node now talks mutual TLS like any other.
            let tls = NodeTLS(
                certificateAuthorityPEM: joined.authorityPEM, certificateChainPEM: joined.certificatePEM,
                privateKeyPEM: joined.privateKeyPEM)
            let client = try await NodeClient.connect(host: "127.0.0.1", port: port, tls: tls, expecting: .role(.placement))
            #expect(try await client.call("/v1/cluster/status", timeout: .seconds(5)).status == 200)
            await client.close()
        }
        #expect(try service.store.tokens().first?.usedBy == "gpu-a")
    }

    @Test("a client without a certificate reaches the join paths only: elsewhere it gets a 403")
    func anonymousElsewhere() async throws {
        try await Self.serving(try Self.service()) { port in
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            configuration.minimumTLSVersion = .tlsv13
            configuration.applicationProtocols = ["h2"]
            let client = try await NodeClient.connect(
                host: "127.0.0.1", port: port, sslContext: try NIOSSLContext(configuration: configuration), expecting: nil,
                connectTimeout: .seconds(5))
            let status = try await client.call("/v1/cluster/status", timeout: .seconds(5))
            #expect(status.status == 403)
            #expect(status.bodyText.contains("needs a certificate from the cluster CA"))
            #expect(try await client.call(ClusterJoin.authorityPath, method: "GET", timeout: .seconds(5)).status == 200)
            await client.close()
        }
    }

    @Test("a token pinning another CA stops the join before the token is sent, and the token stays usable")
    func pinnedAuthority() async throws {
        let service = try Self.service()
        var token = try Self.token(service)
        token.authorityFingerprint = try ClusterCertificates.fingerprint(certificatePEM: try ClusterCertificates.makeAuthority().certificatePEM)
        try await Self.serving(service) { port in
            let error = await #expect(throws: RPCError.self) {
                try await JoinClient.join(host: "127.0.0.1", port: port, token: token, name: "gpu-a", roles: [.decode])
            }
            #expect(error?.code == .forbidden)
            #expect(error?.message.contains("pins \(token.authorityFingerprint)") == true)
        }
        #expect(try service.store.tokens().first?.state(at: Date()) == .usable)
    }

    @Test("refusals over the wire keep their code: roles beyond the token are a 403, a reused token a 401")
    func refusalsOverTheWire() async throws {
        let service = try Self.service()
        let token = try Self.token(service)
        try await Self.serving(service) { port in
            let beyond = await #expect(throws: RPCError.self) {
                try await JoinClient.join(host: "127.0.0.1", port: port, token: token, name: "gpu-a", roles: [.router])
            }
            #expect(beyond?.code == .forbidden && beyond?.message.contains("403 roles_beyond_token") == true)
            _ = try await JoinClient.join(host: "127.0.0.1", port: port, token: token, name: "gpu-a", roles: [.decode])
            let reused = await #expect(throws: RPCError.self) {
                try await JoinClient.join(host: "127.0.0.1", port: port, token: token, name: "gpu-b", roles: [.decode])
            }
            #expect(reused?.code == .usedToken && reused?.message.contains("401 used_token") == true)
        }
    }

    @Test("malformed requests are 400s that name what is wrong, and spend nothing")
    func malformed() throws {
        let service = try Self.service()
        let token = try Self.token(service)
        func answer(_ object: [String: Any]) throws -> (Int, String) {
            let (status, body) = service.join(Array(try JSONSerialization.data(withJSONObject: object)), from: "10.0.0.1:1")
            return (status, String(decoding: body, as: UTF8.self))
        }
        let base: [String: Any] = ["token_id": token.id, "secret": token.secret, "name": "gpu-a", "roles": ["decode"], "csr": "junk"]
        let csr = try answer(base)
        #expect(csr.0 == 400 && csr.1.contains("PKCS#10"))
        var spaced = base
        spaced["name"] = "gpu a"
        #expect(try answer(spaced).0 == 400)
        var long = base
        long["name"] = String(repeating: "a", count: 64)
        #expect(try answer(long).1.contains("1-63"))
        var role = base
        role["roles"] = ["wizard"]
        #expect(try answer(role).1.contains("wizard"))
        #expect(service.join(Array("not json".utf8), from: "10.0.0.1:1").status == 400)
        #expect(try service.store.tokens().first?.state(at: Date()) == .usable)
    }
}
