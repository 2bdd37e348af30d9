import ArgumentParser
import Foundation
import RPC

/// `baton token …`: join tokens of a placement service that is the cluster's CA (`baton placement --ca-key`).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make, list and revoke the join tokens `baton join` spends (run on the placement box).",
        subcommands: [TokenCreateCommand.self, TokenListCommand.self, TokenRevokeCommand.self])
}

/// Where the tokens live: placement's state folder.
struct TokenStoreOptions: ParsableArguments {
    @Option(name: .long, help: "The placement service's --state-dir (tokens are kept in join-tokens.json there, mode 0600).")
    var stateDir: String

    var store: JoinTokenStore { JoinTokenStore(directory: stateDir) }
}

/// `baton token create`: prints one single-use, expiring join token.
struct TokenCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Print a single-use, expiring join token for `baton join`.",
        discussion: """
            The token (ID.SECRET.CA) lets one box get a node certificate from placement for a name of its choice and \
            roles within --roles. It pins the cluster CA (the SHA-256 of --certs' ca.pem), so the joining box refuses \
            a placement service presenting any other CA. Only a hash of the secret is stored; the token is printed \
            once. Placement must run with --ca-key for the token to be accepted.
              baton token create --state-dir /var/lib/baton/placement --certs /etc/baton/certs --roles decode --ttl 1h
            """)

    @OptionGroup var storeOptions: TokenStoreOptions

    @Option(name: .long, help: "Directory holding the cluster CA certificate (ca.pem): placement's --certs.")
    var certs: String

    @Option(name: .long, help: "Roles a certificate issued with it may allow: router, prefill, decode, joined by '+'.")
    var roles: String

    @Option(name: .long, help: "How long it stays usable: 90s, 30m, 1h, 2d, or seconds (at most 30 days).")
    var ttl: String = "1h"

    @Flag(name: .long, help: "Allow it to issue a certificate for a name that already holds a valid one (giving a node a new key).")
    var replace = false

    func validate() throws {
        _ = try Self.parseTTL(ttl)
        _ = try parsedRoles()
    }

    func parsedRoles() throws -> Set<NodeRole> {
        do { return try NodeRole.parseList(roles) } catch { throw ValidationError("--roles: \(error.message)") }
    }

    /// "90s", "30m", "1h", "2d" or plain seconds → seconds.
    static func parseTTL(_ text: String) throws -> TimeInterval {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = Substring(text.trimmingCharacters(in: .whitespaces)), scale = 1.0
        if let last = number.last, let unit = units[last] {
            scale = unit
            number = number.dropLast()
        }
        guard let value = Double(number), value.isFinite, value > 0 else {
            throw ValidationError("--ttl takes a duration such as 90s, 30m, 1h or 2d; got \"\(text)\"")
        }
        return value * scale
    }

    func run() throws {
        let caPath = URL(fileURLWithPath: certs).appendingPathComponent("ca.pem").path
        guard let authority = try? String(contentsOfFile: caPath, encoding: .utf8) else {
            throw ValidationError("cannot read \(caPath), the cluster CA the token pins")
        }
        let roles = try parsedRoles(), seconds = try Self.parseTTL(ttl)
        do throws(RPCError) {
            let fingerprint = try ClusterCertificates.fingerprint(certificatePEM: authority)
            let (token, record) = try storeOptions.store.create(
                roles: roles, ttl: seconds, replace: replace, authorityFingerprint: fingerprint)
            print(token.text)
            FileHandle.standardError.write(Data("""
                join token \(token.id): roles \(Set(record.roles).listed), single use, expires \(JoinTokenStore.format(record.expiresAt))\(replace ? ", may replace an existing node's certificate" : "")
                on the joining box: baton join --placement HOST:PORT --token TOKEN --name NAME --roles \(Set(record.roles).listed) --out DIR

                """.utf8))
        } catch {
            FileHandle.standardError.write(Data("baton token create: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// `baton token list`: every token with its state, never its secret.
struct TokenListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List join tokens: id, roles, state, expiry, and who used each.")

    @OptionGroup var storeOptions: TokenStoreOptions

    @Flag(name: .long, help: "Print JSON lines instead of a table.")
    var json = false

    func run() throws {
        let now = Date()
        let tokens: [JoinTokenStore.Token]
        do { tokens = try storeOptions.store.tokens(now: now) } catch {
            FileHandle.standardError.write(Data("baton token list: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            for token in tokens {
                var object: [String: Any] = [
                    "id": token.id, "roles": token.roles.map(\.rawValue), "state": token.state(at: now).rawValue,
                    "created_at": token.createdAt.timeIntervalSince1970, "expires_at": token.expiresAt.timeIntervalSince1970,
                    "replace": token.replace,
                ]
                if let usedBy = token.usedBy { object["used_by"] = usedBy }
                if let usedFrom = token.usedFrom { object["used_from"] = usedFrom }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            }
            return
        }
        print("ID                ROLES                  STATE    EXPIRES                  USED BY")
        for token in tokens {
            let used = token.usedBy.map { "\($0) from \(token.usedFrom ?? "?")" } ?? "-"
            print([
                token.id, Set(token.roles).listed.padding(toLength: 22, withPad: " ", startingAt: 0),
                token.state(at: now).rawValue.padding(toLength: 8, withPad: " ", startingAt: 0),
                JoinTokenStore.format(token.expiresAt), used,
            ].joined(separator: " "))
        }
    }
}

/// `baton token revoke ID`: the token issues nothing more.
struct TokenRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a join token so it issues nothing more (certificates it already issued stay valid).")

    @OptionGroup var storeOptions: TokenStoreOptions

    @Argument(help: "The token's id (the part before the first '.', as `baton token list` shows it).")
    var id: String

    func run() throws {
        // A whole token pasted by mistake is taken by its id.
        let id = String(self.id.split(separator: ".").first ?? "")
        do {
            let token = try storeOptions.store.revoke(id: id)
            print("revoked join token \(token.id) (\(Set(token.roles).listed))")
        } catch {
            FileHandle.standardError.write(Data("baton token revoke: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}
