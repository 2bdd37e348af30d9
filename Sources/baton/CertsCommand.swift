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
            node DIR/NODE.pem and DIR/NODE-key.pem. Keys are written with mode 0600. Give every node its own
            certificate and key plus ca.pem; keep ca-key.pem off the nodes.
            Example: baton certs --out /etc/baton/certs --nodes router,prefill-1,decode-1
            """)

    @Option(name: .long, help: "Directory to write the PEM files to (created if missing).")
    var out: String

    @Option(name: .long, help: "Comma-separated node names (each becomes the certificate's name and DNS name).")
    var nodes: String = "prefill,decode"

    @Flag(name: .long, help: "Replace an existing CA in --out.")
    var force = false

    @Option(name: .long, help: "Common name of the cluster CA.")
    var authorityName: String = "Baton cluster CA"

    var nodeNames: [String] {
        nodes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        guard !nodeNames.isEmpty else { throw ValidationError("--nodes names no node") }
        for name in nodeNames where name == "ca" || !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) {
            throw ValidationError("node name \"\(name)\" must be letters, digits, '-' or '.', and not \"ca\"")
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
        for path in try Self.makeCluster(in: directory, authorityName: authorityName, nodes: nodeNames) { print(path) }
    }

    /// Writes a new CA and a certificate and key per node into `directory`; returns the certificate paths
    /// (the CA's first).
    static func makeCluster(in directory: URL, authorityName: String, nodes: [String]) throws -> [String] {
        let authority = try ClusterCertificates.makeAuthority(name: authorityName)
        let caURL = directory.appendingPathComponent("ca.pem")
        try write(authority.certificatePEM, to: caURL, private: false)
        try write(authority.privateKeyPEM, to: directory.appendingPathComponent("ca-key.pem"), private: true)
        var written = [caURL.path]
        for name in nodes {
            let issued = try ClusterCertificates.issueNode(name, authority: authority)
            let certificate = directory.appendingPathComponent("\(name).pem")
            try write(issued.certificatePEM, to: certificate, private: false)
            try write(issued.privateKeyPEM, to: directory.appendingPathComponent("\(name)-key.pem"), private: true)
            written.append(certificate.path)
        }
        return written
    }

    static func write(_ text: String, to url: URL, private isPrivate: Bool) throws {
        let attributes: [FileAttributeKey: Any] = [.posixPermissions: isPrivate ? 0o600 : 0o644]
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.createFile(atPath: url.path, contents: Data(text.utf8), attributes: attributes) else {
            throw ValidationError("cannot write \(url.path)")
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
