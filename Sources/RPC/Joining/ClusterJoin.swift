import Foundation

/// The wire contract of joining: two paths on the placement service's listener, open to callers without a
/// certificate, with JSON bodies (snake_case keys).
///
/// - `GET /v1/join/authority` → `{"ca_certificate": PEM}`: the cluster CA, public. The joining box checks it
///   against the fingerprint in its token before it trusts it.
/// - `POST /v1/join` with `{"token_id", "secret", "name", "roles": [..], "csr": PEM}` → 200
///   `{"certificate": PEM, "ca_certificate": PEM}`, or a refusal `{"code", "message"}` with the status below.
public enum ClusterJoin {
    public static let authorityPath = "/v1/join/authority"
    public static let joinPath = "/v1/join"
    /// Largest join request body accepted (a P-256 CSR is well under 1 KiB).
    public static let maximumRequestBytes = 64 << 10

    struct AuthorityAnswer: Codable {
        var caCertificate: String
    }

    struct Request: Codable {
        var tokenId: String
        var secret: String
        var name: String
        var roles: [String]
        var csr: String
    }

    struct Answer: Codable {
        var certificate: String
        var caCertificate: String
    }

    struct Refusal: Codable {
        var code: String
        var message: String
    }

    /// Each refusal's HTTP status and `code`, both ways.
    static let refusals: [(code: RPCError.Code, status: Int, name: String)] = [
        (.invalidArgument, 400, "invalid_request"),
        (.unknownToken, 401, "unknown_token"),
        (.expiredToken, 401, "expired_token"),
        (.usedToken, 401, "used_token"),
        (.revokedToken, 401, "revoked_token"),
        (.forbidden, 403, "roles_beyond_token"),
        (.nameTaken, 409, "name_taken"),
    ]

    static func refusal(for error: RPCError) -> (status: Int, body: Refusal) {
        guard let entry = refusals.first(where: { $0.code == error.code }) else {
            return (500, Refusal(code: "internal", message: error.message))
        }
        return (entry.status, Refusal(code: entry.name, message: error.message))
    }

    static func error(status: Int, body: [UInt8], from address: String) -> RPCError {
        guard let refusal = try? decoder.decode(Refusal.self, from: Data(body)) else {
            return RPCError(
                .protocolViolation,
                "\(address) answered the join with status \(status) and no refusal: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        let code = refusals.first { $0.name == refusal.code }?.code ?? .protocolViolation
        return RPCError(code, "placement at \(address) refused the join (\(status) \(refusal.code)): \(refusal.message)")
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}
