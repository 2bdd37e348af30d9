import ArgumentParser
import Foundation
import RPC

/// `baton join`: gets this box a node certificate from a placement service that is the cluster's CA, with a join
/// token, making the key here. Writes what `--certs DIR --node NAME` of every cluster command reads.
struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Get this box a node certificate from the placement service with a join token; the key never leaves the box.",
        discussion: """
            Makes an ECDSA P-256 key (written 0600 from creation), sends a signing request with the token to \
            placement, and writes DIR/NAME-key.pem, DIR/NAME.pem and DIR/ca.pem. The token pins the cluster CA: \
            placement must present exactly that CA, or nothing is sent. --roles must be within the token's roles.
              baton join --placement 10.0.0.2:7400 --token-file token.txt --name gpu-box --roles decode --out /etc/baton/certs
              baton worker --role decode --placement 10.0.0.2:7400 --certs /etc/baton/certs --node gpu-box …
            See Deploy/docs/security.md.
            """)

    @OptionGroup var placementAddress: PlacementAddressOptions

    @Option(name: .long, help: "The join token `baton token create` printed on the placement box (ID.SECRET.CA). Visible to other local users in the process list while this runs: prefer --token-file or BATON_JOIN_TOKEN.")
    var token: String?

    @Option(name: .customLong("token-file"), help: "A file holding the join token (its first line).")
    var tokenFile: String?

    @Option(name: .long, help: "This node's name: 1-63 ASCII letters, digits, '-' or '.'.")
    var name: String

    @Option(name: .long, help: "Roles to ask for (router, prefill, decode, joined by '+'), within the token's.")
    var roles: String

    @Option(name: .long, help: "Directory to write NAME-key.pem, NAME.pem and ca.pem to (created if missing).")
    var out: String

    @Flag(name: .long, help: "Replace NAME's files, or a ca.pem of another CA, already in --out.")
    var force = false

    @Option(name: .long, help: "Seconds to wait for each connection and each answer.")
    var timeout: Double = 10

    /// The token's text from --token, --token-file or BATON_JOIN_TOKEN (exactly one).
    func tokenText() throws -> String {
        let environment = ProcessInfo.processInfo.environment["BATON_JOIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let given = [token != nil, tokenFile != nil, environment != nil].filter { $0 }.count
        guard given == 1 else {
            throw ValidationError(given == 0
                ? "give the join token: --token-file FILE, BATON_JOIN_TOKEN, or --token"
                : "give the join token one way only: --token, --token-file or BATON_JOIN_TOKEN")
        }
        if let token { return token }
        if let environment { return environment }
        let path = tokenFile!
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("--token-file \(path) cannot be read")
        }
        guard let line = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }),
            !line.isEmpty
        else { throw ValidationError("--token-file \(path) holds no token on its first line") }
        return line
    }

    func validate() throws {
        if let problem = NodeIdentity.nameProblem(name) { throw ValidationError("--name: \(problem)") }
        do {
            _ = try NodeRole.parseList(roles)
            _ = try JoinToken(parsing: try tokenText())
        } catch let error as ValidationError {
            throw error
        } catch let error as RPCError {
            throw ValidationError(error.message)
        }
        guard timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be in (0, 600] seconds") }
    }

    func run() async throws {
        let token = try JoinToken(parsing: try tokenText())
        let roles = try NodeRole.parseList(roles)
        let (host, port) = try placementAddress.endpoint()
        let directory = URL(fileURLWithPath: out, isDirectory: true)
        let keyURL = directory.appendingPathComponent("\(name)-key.pem")
        let certificateURL = directory.appendingPathComponent("\(name).pem")
        let authorityURL = directory.appendingPathComponent("ca.pem")
        // Refuse before spending the token, not after.
        if !force {
            for url in [keyURL, certificateURL] where FileManager.default.fileExists(atPath: url.path) {
                throw ValidationError("\(url.path) already exists; pass --force to replace it")
            }
            if let existing = try? String(contentsOf: authorityURL, encoding: .utf8),
                (try? ClusterCertificates.fingerprint(certificatePEM: existing)) != token.authorityFingerprint
            {
                throw ValidationError("\(authorityURL.path) holds another cluster's CA than the token pins; pass --force to replace it")
            }
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("cannot create \(out): \(error.localizedDescription)")
        }
        let joined: JoinClient.Joined
        do {
            let wait = Duration.milliseconds(Int64(timeout * 1000))
            joined = try await JoinClient.join(
                host: host, port: port, token: token, name: name, roles: roles, connectTimeout: wait,
                timeout: wait)
        } catch {
            FileHandle.standardError.write(Data("baton join: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        try CertsCommand.write(joined.privateKeyPEM, to: keyURL, private: true)
        try CertsCommand.write(joined.certificatePEM, to: certificateURL, private: false)
        try CertsCommand.write(joined.authorityPEM, to: authorityURL, private: false)
        print(certificateURL.path)
        FileHandle.standardError.write(Data("""
            joined as \(joined.identity); run this node with --certs \(out) --node \(name)

            """.utf8))
    }
}
