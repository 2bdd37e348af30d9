import Foundation
import RPC
import Testing
import X509

/// The join-token store on disk: what a token allows, that it works once and expires, and that the file keeps
/// only hashes, with mode 0600, across reloads.
@Suite("Join token store")
struct JoinTokenStoreTests {
    static let authority = Result { () throws(RPCError) in try ClusterCertificates.makeAuthority() }
    static let fingerprint = Result { try ClusterCertificates.fingerprint(certificatePEM: try authority.get().certificatePEM) }

    /// A fresh store in its own temporary folder.
    static func store() -> JoinTokenStore {
        JoinTokenStore(directory: FileManager.default.temporaryDirectory.appendingPathComponent("baton-tokens-\(UUID().uuidString)").path)
    }

    /// Signs for `name` as placement would (a new key stands in for the joining node's).
    static func sign(_ name: String, _ roles: Set<NodeRole>) throws(RPCError) -> Certificate {
        let issued = try ClusterCertificates.issueNode(name, roles: roles, authority: try authority.get())
        do { return try Certificate(pemEncoded: issued.certificatePEM) } catch {
            throw RPCError(.certificate, "unreadable test certificate", cause: error)
        }
    }

    static func redeem(
        _ store: JoinTokenStore, _ token: JoinToken, name: String = "decode-5", roles: Set<NodeRole> = [.decode],
        reserved: Set<String> = [], now: Date = Date()
    ) throws(RPCError) -> JoinTokenStore.Token {
        try store.redeem(
            id: token.id, secret: token.secret, name: name, roles: roles, from: "10.0.0.9:5000", reservedNames: reserved,
            now: now
        ) { _ throws(RPCError) in try sign(name, roles) }.token
    }

    @Test("a token prints as id, secret and the CA's fingerprint, and reads back the same; a damaged one names its bad part")
    func textForm() throws {
        let (token, _) = try Self.store().create(roles: [.decode], ttl: 60, authorityFingerprint: try Self.fingerprint.get())
        #expect(try JoinToken(parsing: token.text) == token)
        #expect(token.authorityFingerprint == (try Self.fingerprint.get()))
        let missing = #expect(throws: RPCError.self) { try JoinToken(parsing: "\(token.id).\(token.secret)") }
        #expect(missing?.message.contains("three parts") == true)
        let short = #expect(throws: RPCError.self) { try JoinToken(parsing: "\(token.id).abc.\(token.authorityFingerprint)") }
        #expect(short?.message.contains("secret") == true && short?.message.contains("abc") == false)
    }

    @Test("a token issues one certificate: the second use is refused naming who used it, and the record says so")
    func singleUse() throws {
        let store = Self.store()
        let (token, _) = try store.create(roles: [.decode], ttl: 3600, authorityFingerprint: try Self.fingerprint.get())
        let used = try Self.redeem(store, token)
        #expect(used.usedBy == "decode-5" && used.usedFrom == "10.0.0.9:5000" && used.state(at: Date()) == .used)
        let again = #expect(throws: RPCError.self) { try Self.redeem(store, token, name: "decode-6") }
        #expect(again?.code == .usedToken)
        #expect(again?.message.contains("decode-5") == true)
        #expect(try store.issuedCertificates().map(\.name) == ["decode-5"])
    }

    @Test("a token past its time to live is refused as expired, and a refusal leaves a usable token usable")
    func expiry() throws {
        let store = Self.store()
        let created = Date()
        let (token, _) = try store.create(roles: [.decode], ttl: 60, authorityFingerprint: try Self.fingerprint.get(), now: created)
        let late = #expect(throws: RPCError.self) { try Self.redeem(store, token, now: created.addingTimeInterval(61)) }
        #expect(late?.code == .expiredToken)
        let beyond = #expect(throws: RPCError.self) { try Self.redeem(store, token, roles: [.decode, .prefill], now: created) }
        #expect(beyond?.code == .forbidden)
        #expect(beyond?.message.contains("prefill") == true)
        #expect(try Self.redeem(store, token, now: created.addingTimeInterval(59)).state(at: created) == .used)
    }

    @Test("a wrong secret looks like an unknown token, and a revoked token issues nothing")
    func unknownAndRevoked() throws {
        let store = Self.store()
        let (token, _) = try store.create(roles: [.router], ttl: 600, authorityFingerprint: try Self.fingerprint.get())
        var wrong = token
        wrong.secret = String(repeating: "0", count: 32)
        let unknown = #expect(throws: RPCError.self) { try Self.redeem(store, wrong, roles: [.router]) }
        #expect(unknown?.code == .unknownToken)
        try store.revoke(id: token.id)
        let revoked = #expect(throws: RPCError.self) { try Self.redeem(store, token, roles: [.router]) }
        #expect(revoked?.code == .revokedToken)
        #expect(#expect(throws: RPCError.self) { try store.revoke(id: "0123456789abcdef") }?.code == .unknownToken)
    }

    @Test("a name that holds a valid certificate is refused unless the token was made to replace it")
    func nameTaken() throws {
        let store = Self.store()
        let fingerprint = try Self.fingerprint.get()
        _ = try Self.redeem(store, try store.create(roles: [.decode], ttl: 600, authorityFingerprint: fingerprint).token)
        let second = try store.create(roles: [.decode], ttl: 600, authorityFingerprint: fingerprint).token
        #expect(#expect(throws: RPCError.self) { try Self.redeem(store, second) }?.code == .nameTaken)
        #expect(#expect(throws: RPCError.self) { try Self.redeem(store, second, name: "router", reserved: ["router"]) }?.code == .nameTaken)
        let replacing = try store.create(roles: [.decode], ttl: 600, replace: true, authorityFingerprint: fingerprint).token
        #expect(try Self.redeem(store, replacing).usedBy == "decode-5")
        #expect(try store.issuedCertificates().filter { $0.name == "decode-5" }.count == 1)
    }

    @Test("a token may not grant the placement role, nor live longer than 30 days")
    func limits() throws {
        let store = Self.store()
        let fingerprint = try Self.fingerprint.get()
        #expect(throws: RPCError.self) { try store.create(roles: [.placement], ttl: 60, authorityFingerprint: fingerprint) }
        #expect(throws: RPCError.self) { try store.create(roles: [.decode], ttl: 31 * 86_400, authorityFingerprint: fingerprint) }
        #expect(throws: RPCError.self) { try store.create(roles: [.decode], ttl: 0, authorityFingerprint: fingerprint) }
    }

    @Test("tokens survive a reload from disk: an unused one still works, a used one stays used")
    func persistence() throws {
        let first = Self.store()
        let fingerprint = try Self.fingerprint.get()
        let (used, _) = try first.create(roles: [.decode], ttl: 600, authorityFingerprint: fingerprint)
        let (unused, _) = try first.create(roles: [.prefill], ttl: 600, authorityFingerprint: fingerprint)
        _ = try Self.redeem(first, used)
        let reloaded = JoinTokenStore(directory: first.directory)
        #expect(try reloaded.tokens().map(\.id) == [used.id, unused.id])
        #expect(#expect(throws: RPCError.self) { try Self.redeem(reloaded, used, name: "decode-7") }?.code == .usedToken)
        #expect(try Self.redeem(reloaded, unused, name: "prefill-7", roles: [.prefill]).usedBy == "prefill-7")
    }

    @Test("the store holds only a hash of each secret, in files of mode 0600")
    func hashOnlyAndPrivate() throws {
        let store = Self.store()
        let (token, _) = try store.create(roles: [.decode], ttl: 600, authorityFingerprint: try Self.fingerprint.get())
        let text = try String(contentsOfFile: store.path, encoding: .utf8)
        #expect(!text.contains(token.secret))
        #expect(text.contains(JoinToken.secretDigest(token.secret)))
        for path in [store.path, store.directory + "/join-tokens.lock"] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600, "\(path)")
        }
    }

    @Test("a store file others may read is refused, naming the file and the fix")
    func widePermissions() throws {
        let store = Self.store()
        _ = try store.create(roles: [.decode], ttl: 600, authorityFingerprint: try Self.fingerprint.get())
        chmod(store.path, 0o644)
        let error = #expect(throws: RPCError.self) { try store.tokens() }
        #expect(error?.message.contains(store.path) == true && error?.message.contains("chmod 600") == true)
    }
}
