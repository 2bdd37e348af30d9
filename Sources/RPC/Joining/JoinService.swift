import Crypto
import Foundation
import Logging
import X509

/// The placement service's side of joining, when it holds the cluster CA's key: serves `ClusterJoin`'s two
/// paths to callers without a certificate, and signs a joining node's request when its token allows it.
/// The CA key stays in this process.
public struct JoinService: Sendable {
    public let authority: ClusterCertificates.Issued
    public let store: JoinTokenStore
    /// Names a token without `replace` may not take: nodes whose certificates `baton certs` made.
    public let reservedNames: Set<String>
    /// Validity of the certificates it issues, in days.
    public let validDays: Int
    private let logger: Logger

    /// Checks that the key belongs to the CA certificate.
    public init(
        authority: ClusterCertificates.Issued, store: JoinTokenStore, reservedNames: Set<String> = [],
        validDays: Int = 825, logger: Logger = Logger(label: "baton.join")
    ) throws(RPCError) {
        try ClusterCertificates.checkAuthority(authority)
        self.authority = authority
        self.store = store
        self.reservedNames = reservedNames
        self.validDays = validDays
        self.logger = logger
    }

    /// The names of the still-valid node certificates (`NAME.pem`) in `folder`, as `baton certs` writes them.
    public static func nodeNames(inFolder folder: String, now: Date = Date()) -> Set<String> {
        var names: Set<String> = []
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        for file in files where file.hasSuffix(".pem") && !file.hasSuffix("-key.pem") && file != "ca.pem" {
            let path = URL(fileURLWithPath: folder).appendingPathComponent(file).path
            guard let pem = try? String(contentsOfFile: path, encoding: .utf8),
                let certificate = try? Certificate(pemEncoded: pem), certificate.notValidAfter > now,
                let node = try? NodeIdentity(certificate: certificate)
            else { continue }
            names.insert(node.name)
        }
        return names
    }

    /// The two join paths, open to anyone who completes the TLS handshake.
    public var routes: NodeRoutes {
        var routes = NodeRoutes()
        let service = self
        routes.on(ClusterJoin.authorityPath, allow: .anyone) { _, writer in
            let answer = ClusterJoin.AuthorityAnswer(caCertificate: service.authority.certificatePEM)
            try await writer.respond(status: 200, body: Array(try ClusterJoin.encoder.encode(answer)))
        }
        routes.on(ClusterJoin.joinPath, allow: .anyone) { request, writer in
            let (status, body) = service.join(request.body, from: request.peerAddress)
            try await writer.respond(status: status, body: body)
        }
        return routes
    }

    /// Answers one join request from `address`: the status and JSON body. Every refusal is logged with the
    /// caller's address and the token's id (never its secret).
    func join(_ body: [UInt8], from address: String) -> (status: Int, body: [UInt8]) {
        var tokenID = "no token"
        var node = "an unnamed node"
        do throws(RPCError) {
            guard body.count <= ClusterJoin.maximumRequestBytes else {
                throw RPCError(.invalidArgument, "a join request is at most \(ClusterJoin.maximumRequestBytes) bytes")
            }
            let request: ClusterJoin.Request
            do { request = try ClusterJoin.decoder.decode(ClusterJoin.Request.self, from: Data(body)) } catch {
                throw RPCError(.invalidArgument, "the join request is not valid JSON with token_id, secret, name, roles and csr: \(error)")
            }
            tokenID = JoinToken.isHex(request.tokenId) && request.tokenId.count == 16 ? request.tokenId : "a malformed token id"
            if let problem = NodeIdentity.nameProblem(request.name) { throw RPCError(.invalidArgument, problem) }
            node = request.name
            let roles = try NodeRole.parseList(request.roles.joined(separator: "+"))
            node = NodeIdentity(name: request.name, roles: roles).description
            let publicKey = try ClusterCertificates.verifiedSigningRequestKey(request.csr)
            let (certificate, _) = try store.redeem(
                id: request.tokenId, secret: request.secret, name: request.name, roles: roles, from: address,
                reservedNames: reservedNames
            ) { _ throws(RPCError) in
                try ClusterCertificates.signNode(
                    request.name, roles: roles, publicKey: publicKey, authority: authority, validDays: validDays)
            }
            let pem: String
            do { pem = try certificate.serializeAsPEM().pemString } catch {
                throw RPCError(.certificate, "cannot encode the certificate issued to \(node)", cause: error)
            }
            logger.notice("issued a certificate for \(node) to \(address) with join token \(tokenID), valid until \(JoinTokenStore.format(certificate.notValidAfter))")
            let answer = ClusterJoin.Answer(certificate: pem, caCertificate: authority.certificatePEM)
            return (200, Array((try? ClusterJoin.encoder.encode(answer)) ?? Data()))
        } catch {
            let (status, refusal) = ClusterJoin.refusal(for: error)
            if status >= 500 {
                logger.error("a join from \(address) with join token \(tokenID) as \(node) failed: \(error)")
            } else {
                logger.warning("refused a join from \(address) with join token \(tokenID) as \(node): \(error.message)")
            }
            return (status, Array((try? ClusterJoin.encoder.encode(refusal)) ?? Data()))
        }
    }
}
