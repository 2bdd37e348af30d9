import ArgumentParser
import Foundation
import RPC

/// `baton certs`: the cluster CA and one certificate per node, as PEM files for the mutual-TLS KV plane.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the cluster CA and per-node certificates for the mutual-TLS KV plane.",
        discussion: """
            Writes a new CA to DIR/ca.pem and DIR/ca-key.pem (refusing to replace one without --force), and for each
            node DIR/NODE.pem and DIR/NODE-key.pem. Keys are created with mode 0600. Give every node its own
            certificate and key plus ca.pem; keep ca-key.pem off the nodes.
            Each certificate binds the node's name and the roles it may act in (placement, router, prefill,
            decode; several joined with '+'): NAME:ROLES. The roles may be left out when the name is a role or
            starts with ROLE- (decode-1 is a decode node). See Deploy/docs/security.md.
            Example: baton certs --out /etc/baton/certs --nodes placement,router,prefill-1,gpu-a:decode,both:prefill+decode
            """)

    @Option(name: .long, help: "Directory to write the PEM files to (created if missing).")
    var out: String

    @Option(name: .long, help: "Comma-separated NAME[:ROLES] (roles: placement, router, prefill, decode, joined by '+').")
    var nodes: String = "prefill,decode"

    @Flag(name: .long, help: "Replace an existing CA in --out.")
    var force = false

    @Option(name: .long, help: "Common name of the cluster CA.")
    var authorityName: String = "Baton cluster CA"

    func validate() throws {
        _ = try Self.parseNodes(nodes)
    }

    /// "decode-0:decode,router" → each node's identity. A name without roles must be a role or start with
    /// "ROLE-" (the names `baton up`, the compose file and the Kubernetes manifests use).
    static func parseNodes(_ text: String) throws -> [NodeIdentity] {
        let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !entries.isEmpty else { throw ValidationError("--nodes names no node") }
        var seen: Set<String> = []
        return try entries.map { entry in
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            let name = parts[0]
            if let problem = NodeIdentity.nameProblem(name) { throw ValidationError(problem) }
            guard seen.insert(name).inserted else { throw ValidationError("--nodes names \(name) twice") }
            let roles: Set<NodeRole>
            if parts.count == 2 {
                do { roles = try NodeRole.parseList(parts[1]) } catch {
                    throw ValidationError("--nodes \(entry): \((error as? RPCError)?.message ?? "\(error)")")
                }
            } else if let role = NodeRole.allCases.first(where: { name == $0.rawValue || name.hasPrefix($0.rawValue + "-") }) {
                roles = [role]
            } else {
                throw ValidationError(
                    "--nodes \(name): give its roles as \(name):ROLES (placement, router, prefill, decode; several joined by '+')")
            }
            return NodeIdentity(name: name, roles: roles)
        }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: out, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("cannot create \(out): \(error.localizedDescription)")
        }
        let caURL = directory.appendingPathComponent("ca.pem"), caKeyURL = directory.appendingPathComponent("ca-key.pem")
        if !force && (FileManager.default.fileExists(atPath: caURL.path) || FileManager.default.fileExists(atPath: caKeyURL.path)) {
            throw ValidationError("\(out) already holds a cluster CA; pass --force to replace it (every node then needs new certificates)")
        }
        for path in try Self.makeCluster(in: directory, authorityName: authorityName, nodes: try Self.parseNodes(nodes)) {
            print(path)
        }
    }

    /// Writes a new CA and a certificate and key per node into `directory`; returns the certificate paths
    /// (the CA's first).
    static func makeCluster(in directory: URL, authorityName: String, nodes: [NodeIdentity]) throws -> [String] {
        let authority = try ClusterCertificates.makeAuthority(name: authorityName)
        let caURL = directory.appendingPathComponent("ca.pem")
        try write(authority.certificatePEM, to: caURL, private: false)
        try write(authority.privateKeyPEM, to: directory.appendingPathComponent("ca-key.pem"), private: true)
        var written = [caURL.path]
        for node in nodes {
            let issued = try ClusterCertificates.issueNode(node.name, roles: node.roles, authority: authority)
            let certificate = directory.appendingPathComponent("\(node.name).pem")
            try write(issued.certificatePEM, to: certificate, private: false)
            try write(issued.privateKeyPEM, to: directory.appendingPathComponent("\(node.name)-key.pem"), private: true)
            written.append(certificate.path)
        }
        return written
    }

    /// Writes `text` to a new file at `url`, created with its final mode (0600 for keys; see `ProtectedFile`).
    static func write(_ text: String, to url: URL, private isPrivate: Bool) throws {
        do {
            try ProtectedFile.write(
                Array(text.utf8), to: url.path, mode: isPrivate ? ProtectedFile.privateMode : ProtectedFile.publicMode)
        } catch {
            throw ValidationError(error.message)
        }
    }
}

extension NodeTLS {
    /// Node `node`'s certificate, key and the cluster CA from a directory written by `baton certs`.
    static func load(directory: String, node: String) throws -> NodeTLS {
        let base = URL(fileURLWithPath: directory, isDirectory: true)
        func read(_ name: String) throws -> String {
            let url = base.appendingPathComponent(name)
            do { return try String(contentsOf: url, encoding: .utf8) } catch {
                throw ValidationError("cannot read \(url.path) (create it with `baton certs --out \(directory) --nodes \(node)`)")
            }
        }
        return NodeTLS(
            certificateAuthorityPEM: try read("ca.pem"), certificateChainPEM: try read("\(node).pem"),
            privateKeyPEM: try read("\(node)-key.pem"))
    }
}
