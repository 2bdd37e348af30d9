import Foundation
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension RPCError.Code {
    /// A join token nobody issued, or presented with the wrong secret (the two are not told apart).
    public static let unknownToken = RPCError.Code("unknown join token")
    /// A join token past its expiry.
    public static let expiredToken = RPCError.Code("expired join token")
    /// A join token that already issued a certificate.
    public static let usedToken = RPCError.Code("used join token")
    /// A join token revoked with `baton token revoke`.
    public static let revokedToken = RPCError.Code("revoked join token")
    /// A node name that already holds a valid certificate.
    public static let nameTaken = RPCError.Code("name taken")
}

/// The join tokens of a placement service acting as the cluster's CA, and the certificates they issued, in one
/// file beside the membership log (`<state-dir>/join-tokens.json`).
///
/// Only a SHA-256 of each token's secret is stored. The file is created 0600 and replaced atomically; every
/// operation holds an exclusive `flock` on `join-tokens.lock` while it reads, changes and writes the file, so
/// `baton token create` and `revoke` can run beside a live placement service, two joins with one token cannot
/// both succeed, and a restart keeps every token as it was (a used token stays used).
///
/// Tokens are kept a week past their expiry (so `list` can show how they ended), issued-certificate records
/// until the certificate expires.
public final class JoinTokenStore: Sendable {
    /// One token as stored.
    public struct Token: Codable, Sendable, Equatable {
        public var id: String
        /// SHA-256 of the secret, lowercase hex (`JoinToken.secretDigest`).
        public var secretDigest: String
        /// What a certificate issued with this token may allow: the joining node asks for these or fewer.
        public var roles: [NodeRole]
        public var createdAt: Date
        public var expiresAt: Date
        /// Whether it may issue a certificate for a name that already holds a valid one (re-keying a node).
        public var replace: Bool
        public var usedAt: Date?
        /// The node name it issued a certificate for.
        public var usedBy: String?
        /// The address the join came from.
        public var usedFrom: String?
        public var revokedAt: Date?

        /// What the token is at `now`.
        public func state(at now: Date) -> State {
            if revokedAt != nil { return .revoked }
            if usedAt != nil { return .used }
            if now >= expiresAt { return .expired }
            return .usable
        }

        public enum State: String, Sendable { case usable, used, revoked, expired }
    }

    /// A certificate a token issued: the name it binds stays taken until it expires.
    public struct IssuedCertificate: Codable, Sendable, Equatable {
        public var name: String
        public var roles: [NodeRole]
        /// Serial number, hex.
        public var serial: String
        public var issuedAt: Date
        public var notAfter: Date
        /// The id of the token that issued it.
        public var token: String
    }

    struct Contents: Codable {
        var version = 1
        var tokens: [Token] = []
        var issued: [IssuedCertificate] = []
    }

    /// Longest time-to-live a token may have: a join token is meant to be spent soon.
    public static let maximumTTL: TimeInterval = 30 * 86_400
    /// How long an ended token is kept for `list`.
    static let keptAfterExpiry: TimeInterval = 7 * 86_400

    /// The folder holding the store (placement's `--state-dir`).
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// `<directory>/join-tokens.json`.
    public var path: String { URL(fileURLWithPath: directory).appendingPathComponent("join-tokens.json").path }
    var lockPath: String { URL(fileURLWithPath: directory).appendingPathComponent("join-tokens.lock").path }

    /// Makes and stores a token allowing `roles` for `ttl` seconds from `now`, for the cluster whose CA certificate
    /// has `authorityFingerprint`. Returns the token (the only time its secret exists outside the joining box).
    public func create(
        roles: Set<NodeRole>, ttl: TimeInterval, replace: Bool = false, authorityFingerprint: String, now: Date = Date()
    ) throws(RPCError) -> (token: JoinToken, record: Token) {
        guard !roles.isEmpty else { throw RPCError(.invalidArgument, "a join token needs at least one role") }
        guard !roles.contains(.placement) else {
            throw RPCError(
                .invalidArgument,
                "a join token cannot grant the placement role (a placement certificate is trusted by every worker and router); issue it with `baton certs`")
        }
        guard ttl > 0, ttl <= Self.maximumTTL else {
            throw RPCError(.invalidArgument, "a join token's time to live must be more than 0 s and at most 30 days (got \(ttl) s)")
        }
        let token = JoinToken.generate(authorityFingerprint: authorityFingerprint)
        let record = Token(
            id: token.id, secretDigest: JoinToken.secretDigest(token.secret), roles: roles.sorted(), createdAt: now,
            expiresAt: now.addingTimeInterval(ttl), replace: replace)
        try update(now: now) { contents throws(RPCError) in contents.tokens.append(record) }
        return (token, record)
    }

    /// Every stored token, oldest first.
    public func tokens(now: Date = Date()) throws(RPCError) -> [Token] {
        try update(now: now, write: false) { contents throws(RPCError) in contents.tokens }
    }

    /// Every stored record of a certificate a token issued, oldest first.
    public func issuedCertificates(now: Date = Date()) throws(RPCError) -> [IssuedCertificate] {
        try update(now: now, write: false) { contents throws(RPCError) in contents.issued }
    }

    /// Revokes token `id` (unused or not: a revoked token issues nothing more). Returns it as stored.
    @discardableResult
    public func revoke(id: String, now: Date = Date()) throws(RPCError) -> Token {
        try update(now: now) { contents throws(RPCError) in
            guard let index = contents.tokens.firstIndex(where: { $0.id == id }) else {
                throw RPCError(.unknownToken, "no join token \(id) in \(path) (`baton token list` shows them)")
            }
            if contents.tokens[index].revokedAt == nil { contents.tokens[index].revokedAt = now }
            return contents.tokens[index]
        }
    }

    /// Spends token `id` with `secret` on a certificate for node `name` in `roles`, made by `sign` while the store
    /// is locked; the token is marked used and the certificate recorded only once `sign` succeeded.
    ///
    /// Refusals, in the order checked: `.unknownToken` (no such token, or the secret does not match: the two look
    /// the same to the caller), `.revokedToken`, `.usedToken`, `.expiredToken`, `.forbidden` (a role the token does
    /// not allow), `.nameTaken` (the name holds a valid certificate this store issued, or is one of
    /// `reservedNames`, unless the token was made with `replace`). A refusal leaves the token as it was.
    public func redeem(
        id: String, secret: String, name: String, roles: Set<NodeRole>, from address: String,
        reservedNames: Set<String> = [], now: Date = Date(),
        sign: (Token) throws(RPCError) -> Certificate
    ) throws(RPCError) -> (certificate: Certificate, token: Token) {
        try update(now: now) { contents throws(RPCError) in
            guard let index = contents.tokens.firstIndex(where: { $0.id == id }),
                JoinToken.secret(secret, matches: contents.tokens[index].secretDigest)
            else {
                throw RPCError(.unknownToken, "join token \(id) is unknown to this placement service (or its secret is wrong)")
            }
            let token = contents.tokens[index]
            switch token.state(at: now) {
            case .revoked:
                throw RPCError(.revokedToken, "join token \(id) was revoked at \(Self.format(token.revokedAt ?? now))")
            case .used:
                throw RPCError(
                    .usedToken,
                    "join token \(id) was already used at \(Self.format(token.usedAt ?? now)) by \(token.usedBy ?? "a node") from \(token.usedFrom ?? "an unknown address"); each token issues one certificate")
            case .expired:
                throw RPCError(.expiredToken, "join token \(id) expired at \(Self.format(token.expiresAt)); make a new one with `baton token create`")
            case .usable:
                break
            }
            let allowed = Set(token.roles)
            guard roles.isSubset(of: allowed) else {
                throw RPCError(
                    .forbidden,
                    "join token \(id) allows the roles \(allowed.listed); \(roles.subtracting(allowed).listed) is beyond it")
            }
            if !token.replace {
                if let holder = contents.issued.last(where: { $0.name == name && $0.notAfter > now }) {
                    throw RPCError(
                        .nameTaken,
                        "node \(name) already holds a certificate issued at \(Self.format(holder.issuedAt)) (valid until \(Self.format(holder.notAfter))); to give it a new key, join with a token made with --replace")
                }
                if reservedNames.contains(name) {
                    throw RPCError(
                        .nameTaken,
                        "node \(name) has a certificate in placement's certificate folder; choose another name, or join with a token made with --replace")
                }
            }
            let certificate = try sign(token)
            contents.tokens[index].usedAt = now
            contents.tokens[index].usedBy = name
            contents.tokens[index].usedFrom = address
            contents.issued.removeAll { $0.name == name }
            contents.issued.append(IssuedCertificate(
                name: name, roles: roles.sorted(), serial: certificate.serialNumber.description, issuedAt: now,
                notAfter: certificate.notValidAfter, token: id))
            return (certificate, contents.tokens[index])
        }
    }

    /// "2026-05-04 10:11:12 UTC".
    public static func format(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }

    // MARK: The file

    /// Runs `change` on the stored contents under the lock, then (with `write`) prunes and stores the result.
    private func update<T>(
        now: Date, write: Bool = true, _ change: (inout Contents) throws(RPCError) -> T
    ) throws(RPCError) -> T {
        try createDirectory()
        let lock = open(lockPath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, ProtectedFile.privateMode)
        guard lock >= 0 else { throw RPCError(.invalidArgument, "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw RPCError(.invalidArgument, "cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        var contents = try read()
        let result = try change(&contents)
        if write {
            contents.tokens.removeAll { $0.expiresAt.addingTimeInterval(Self.keptAfterExpiry) < now }
            contents.issued.removeAll { $0.notAfter < now }
            let bytes: Data
            do { bytes = try Self.encoder.encode(contents) } catch {
                throw RPCError(.invalidArgument, "cannot encode the join tokens", cause: error)
            }
            try ProtectedFile.replace(Array(bytes) + [UInt8(ascii: "\n")], at: path, mode: ProtectedFile.privateMode)
        }
        return result
    }

    private func createDirectory() throws(RPCError) {
        guard !FileManager.default.fileExists(atPath: directory) else { return }
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RPCError(.invalidArgument, "cannot create \(directory)", cause: error)
        }
    }

    private func read() throws(RPCError) -> Contents {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return Contents() }
            throw RPCError(.invalidArgument, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw RPCError(.invalidArgument, "\(path) is not a regular file") }
        guard info.st_mode & 0o077 == 0 else {
            throw RPCError(
                .invalidArgument,
                "\(path) may be read by others (mode \(String(info.st_mode & 0o777, radix: 8))); only its owner may: chmod 600 \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RPCError(.invalidArgument, "cannot read \(path)")
        }
        do { return try Self.decoder.decode(Contents.self, from: data) } catch {
            throw RPCError(.invalidArgument, "\(path) is not a join-token store: \(error)", cause: error)
        }
    }

    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }

    private static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .secondsSince1970
        return decoder
    }
}
