import Crypto
import Foundation
import NIOSSL
import X509

/// The joining box's side (`baton join`): gets a node certificate from the placement service with a join token,
/// over TLS without a certificate of its own. The key is made by the caller and never leaves it; only a signing
/// request does.
///
/// Trust on first use is not silent: the box has no CA yet, so it first fetches the CA from placement over a
/// connection it cannot verify, refuses it unless its SHA-256 is the fingerprint in the token, and then sends
/// the token's secret only over a second connection verified against that CA, to a server whose certificate
/// allows the placement role. Someone in between sees neither the secret nor a CA it could substitute.
public enum JoinClient {
    /// What a join brings back.
    public struct Joined: Sendable {
        /// The node's new key: the caller writes it (0600), nobody else ever sees it.
        public var privateKeyPEM: String
        public var certificatePEM: String
        public var authorityPEM: String
        public var identity: NodeIdentity
    }

    /// Joins the cluster at `host:port` as node `name` in `roles`, with `key` (by default a new one) as the node's
    /// key. Each connection
    /// waits at most `connectTimeout`, each request at most `timeout`.
    public static func join(
        host: String, port: Int, token: JoinToken, name: String, roles: Set<NodeRole>,
        key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(), connectTimeout: Duration = .seconds(5), timeout: Duration = .seconds(15)
    ) async throws(RPCError) -> Joined {
        if let problem = NodeIdentity.nameProblem(name) { throw RPCError(.invalidArgument, problem) }
        let address = "\(host):\(port)"
        let authorityPEM = try await fetchAuthority(
            host: host, port: port, connectTimeout: connectTimeout, timeout: timeout)
        let presented = try ClusterCertificates.fingerprint(certificatePEM: authorityPEM)
        guard presented == token.authorityFingerprint else {
            throw RPCError(
                .forbidden,
                "the placement service at \(address) presents a cluster CA with SHA-256 fingerprint \(presented), but the join token pins \(token.authorityFingerprint): refusing to send the token (wrong address, another cluster, or someone in between)")
        }

        let authority: NIOSSLCertificate
        do { authority = try NIOSSLCertificate(bytes: Array(authorityPEM.utf8), format: .pem) } catch {
            throw RPCError(.certificate, "cannot read the cluster CA from \(address)", cause: error)
        }
        var configuration = clientConfiguration()
        configuration.trustRoots = .certificates([authority])
        configuration.certificateVerification = .noHostnameVerification
        let request = ClusterJoin.Request(
            tokenId: token.id, secret: token.secret, name: name, roles: roles.sorted().map(\.rawValue),
            csr: try ClusterCertificates.signingRequest(nodeName: name, key: key))
        let body: [UInt8]
        do { body = Array(try ClusterJoin.encoder.encode(request)) } catch {
            throw RPCError(.invalidArgument, "cannot encode the join request", cause: error)
        }
        let client = try await NodeClient.connect(
            host: host, port: port, sslContext: try context(configuration), expecting: .role(.placement),
            connectTimeout: connectTimeout)
        let response: NodeResponse
        do {
            response = try await client.call(ClusterJoin.joinPath, body: body, timeout: timeout)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        guard response.status == 200 else { throw ClusterJoin.error(status: response.status, body: response.body, from: address) }
        let answer: ClusterJoin.Answer
        do { answer = try ClusterJoin.decoder.decode(ClusterJoin.Answer.self, from: Data(response.body)) } catch {
            throw RPCError(.protocolViolation, "\(address) answered the join with something other than a certificate", cause: error)
        }
        let identity = try check(answer, authorityPEM: authorityPEM, name: name, roles: roles, key: key, from: address)
        return Joined(
            privateKeyPEM: key.pemRepresentation, certificatePEM: answer.certificate, authorityPEM: authorityPEM,
            identity: identity)
    }

    /// The cluster CA as placement presents it: the first, unverified step (the caller checks its fingerprint).
    static func fetchAuthority(host: String, port: Int, connectTimeout: Duration, timeout: Duration) async throws(RPCError) -> String {
        var configuration = clientConfiguration()
        // Nothing can be verified yet: the caller compares what comes back with the token's fingerprint.
        configuration.certificateVerification = .none
        let client = try await NodeClient.connect(
            host: host, port: port, sslContext: try context(configuration), expecting: nil,
            connectTimeout: connectTimeout)
        let response: NodeResponse
        do {
            response = try await client.call(ClusterJoin.authorityPath, method: "GET", timeout: timeout)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        guard response.status == 200 else {
            if response.status == 404 {
                throw RPCError(
                    .invalidArgument,
                    "the placement service at \(host):\(port) does not issue certificates (start it with --ca-key to let nodes join)")
            }
            throw ClusterJoin.error(status: response.status, body: response.body, from: "\(host):\(port)")
        }
        do {
            return try ClusterJoin.decoder.decode(ClusterJoin.AuthorityAnswer.self, from: Data(response.body)).caCertificate
        } catch {
            throw RPCError(.protocolViolation, "\(host):\(port) answered \(ClusterJoin.authorityPath) without a CA certificate", cause: error)
        }
    }

    /// The issued certificate must be for this key, this name and these roles, and signed by the pinned CA.
    static func check(
        _ answer: ClusterJoin.Answer, authorityPEM: String, name: String, roles: Set<NodeRole>, key: P256.Signing.PrivateKey,
        from address: String
    ) throws(RPCError) -> NodeIdentity {
        let certificate: Certificate, authority: Certificate
        do {
            certificate = try Certificate(pemEncoded: answer.certificate)
            authority = try Certificate(pemEncoded: authorityPEM)
        } catch {
            throw RPCError(.protocolViolation, "\(address) sent a certificate that cannot be read", cause: error)
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw RPCError(.protocolViolation, "\(address) sent a certificate for another key than this node's")
        }
        guard authority.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw RPCError(.protocolViolation, "\(address) sent a certificate the pinned cluster CA did not sign")
        }
        let identity = try NodeIdentity(certificate: certificate)
        guard identity.name == name, identity.roles == roles else {
            throw RPCError(.protocolViolation, "\(address) sent a certificate for \(identity), not for \(NodeIdentity(name: name, roles: roles))")
        }
        return identity
    }

    /// TLS 1.3 and HTTP/2, as every node speaks, with no certificate of its own.
    private static func clientConfiguration() -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.applicationProtocols = ["h2"]
        return configuration
    }

    private static func context(_ configuration: TLSConfiguration) throws(RPCError) -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: configuration) } catch {
            throw RPCError(.certificate, "could not set up TLS", cause: error)
        }
    }
}
