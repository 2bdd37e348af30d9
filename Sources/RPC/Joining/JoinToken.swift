import Crypto
import Foundation

/// A single-use, expiring credential that lets a box without a certificate ask the placement service (acting as
/// the cluster's CA) for one: `baton token create` makes it, `baton join` spends it.
///
/// Text form: `<id>.<secret>.<ca>`, all lowercase hex —
/// - `id` (16 digits): names the token in logs, `baton token list` and `revoke`; not secret;
/// - `secret` (32 digits, 128 random bits): the credential; placement stores only its SHA-256;
/// - `ca` (64 digits): the SHA-256 of the cluster CA certificate (DER). The joining box has no CA yet, so it
///   cannot verify placement's certificate; it fetches the CA from placement, refuses it unless its fingerprint
///   is this one, and only then sends the secret over a connection verified against that CA.
public struct JoinToken: Sendable, Hashable, CustomStringConvertible {
    public var id: String
    public var secret: String
    /// SHA-256 of the cluster CA certificate's DER bytes, lowercase hex.
    public var authorityFingerprint: String

    public init(id: String, secret: String, authorityFingerprint: String) {
        self.id = id
        self.secret = secret
        self.authorityFingerprint = authorityFingerprint
    }

    /// A fresh token for the cluster whose CA has `authorityFingerprint`.
    public static func generate(authorityFingerprint: String) -> JoinToken {
        JoinToken(id: randomHex(bytes: 8), secret: randomHex(bytes: 16), authorityFingerprint: authorityFingerprint)
    }

    /// Reads the text form; throws naming which part is wrong (the secret is never echoed).
    public init(parsing text: String) throws(RPCError) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw RPCError(
                .invalidArgument,
                "a join token has three parts separated by '.' (ID.SECRET.CA, as `baton token create` prints it); this one has \(parts.count)")
        }
        for (part, name, digits) in [(parts[0], "id", 16), (parts[1], "secret", 32), (parts[2], "CA fingerprint", 64)] {
            guard part.count == digits, Self.isHex(part) else {
                throw RPCError(.invalidArgument, "the join token's \(name) must be \(digits) lowercase hex digits")
            }
        }
        self.init(id: String(parts[0]), secret: String(parts[1]), authorityFingerprint: String(parts[2]))
    }

    /// The text form, secret included: what `baton join --token` takes.
    public var text: String { "\(id).\(secret).\(authorityFingerprint)" }

    /// The token without its secret, for logs.
    public var description: String { "join token \(id)" }

    /// What placement stores instead of the secret: its SHA-256, lowercase hex. The secret is 128 random bits,
    /// so a fast hash is enough: there is no dictionary to try.
    public static func secretDigest(_ secret: String) -> String {
        hex(SHA256.hash(data: Array(secret.utf8)))
    }

    /// Whether `secret` hashes to `digest`, comparing every byte whatever the first difference.
    public static func secret(_ secret: String, matches digest: String) -> Bool {
        let computed = Array(secretDigest(secret).utf8), stored = Array(digest.utf8)
        guard computed.count == stored.count else { return false }
        var difference: UInt8 = 0
        for index in computed.indices { difference |= computed[index] ^ stored[index] }
        return difference == 0
    }

    static func isHex(_ text: some StringProtocol) -> Bool {
        text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return hex((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
