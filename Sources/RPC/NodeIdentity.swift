import Foundation
import NIOSSL
import X509

/// What a node may do in the cluster. A certificate lists one or more.
public enum NodeRole: String, Sendable, Hashable, CaseIterable, Comparable, Codable {
    /// The placement service: workers register with it, routers ask it where requests run.
    case placement
    /// A router: calls `choose`, opens decodes, submits prefills, cancels.
    case router
    /// A prefill worker: registers as prefill, sends KV to decode workers.
    case prefill
    /// A decode worker: registers as decode, receives KV (and sends it when it moves a generation away).
    case decode

    public static func < (lhs: NodeRole, rhs: NodeRole) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Roles from "decode+prefill" (also accepts ',' between roles); throws naming the unknown one.
    public static func parseList(_ text: some StringProtocol) throws(RPCError) -> Set<NodeRole> {
        var roles: Set<NodeRole> = []
        for part in text.split(whereSeparator: { $0 == "+" || $0 == "," }) {
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            guard let role = NodeRole(rawValue: name) else {
                throw RPCError(
                    .invalidArgument,
                    "unknown role \"\(part)\" (roles: \(NodeRole.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            roles.insert(role)
        }
        guard !roles.isEmpty else { throw RPCError(.invalidArgument, "no role given in \"\(text)\"") }
        return roles
    }
}

extension Set where Element == NodeRole {
    /// "decode+prefill": sorted, as `baton certs` takes them.
    public var listed: String { sorted().map(\.rawValue).joined(separator: "+") }
}

/// Who a node certificate says its holder is: the node's name and the roles it may act in.
///
/// Encoding in the certificate (issued by `ClusterCertificates.issueNode`), all in the subject alternative
/// names extension:
/// - `DNS:<name>` — the node name (so ordinary host-name tooling shows it);
/// - `URI:urn:baton:node:<name>` — the node name, as Baton reads it;
/// - `URI:urn:baton:role:<role>` — once per allowed role (`placement`, `router`, `prefill`, `decode`).
///
/// A certificate from the cluster CA without the node URI (one made before roles existed) carries no identity
/// and is refused at the TLS handshake.
public struct NodeIdentity: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var roles: Set<NodeRole>

    public init(name: String, roles: Set<NodeRole>) {
        self.name = name
        self.roles = roles
    }

    /// Why `name` cannot name a node, or nil when it can: 1-63 ASCII letters, digits, '-' or '.', and not "ca"
    /// (the CA's files are `ca.pem` and `ca-key.pem` beside the nodes' `NAME.pem`). Node names become file names,
    /// DNS names and URIs, so nothing else is allowed.
    public static func nameProblem(_ name: String) -> String? {
        guard name != "ca", !name.isEmpty, name.count <= 63,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
        else {
            return "node name \"\(name)\" must be 1-63 ASCII letters, digits, '-' or '.', and not \"ca\""
        }
        return nil
    }

    static let nodeURIPrefix = "urn:baton:node:"
    static let roleURIPrefix = "urn:baton:role:"

    /// The subject alternative names that encode this identity.
    var subjectAlternativeNames: SubjectAlternativeNames {
        SubjectAlternativeNames(
            [.dnsName(name), .uniformResourceIdentifier(Self.nodeURIPrefix + name)]
                + roles.sorted().map { .uniformResourceIdentifier(Self.roleURIPrefix + $0.rawValue) })
    }

    /// The identity `certificate` carries; throws when it carries none or an unknown role.
    public init(certificate: Certificate) throws(RPCError) {
        let names: SubjectAlternativeNames?
        do { names = try certificate.extensions.subjectAlternativeNames } catch {
            throw RPCError(.certificate, "the certificate's subject alternative names are malformed", cause: error)
        }
        var name: String?
        var roles: Set<NodeRole> = []
        for entry in names ?? SubjectAlternativeNames([]) {
            guard case .uniformResourceIdentifier(let uri) = entry else { continue }
            if uri.hasPrefix(Self.nodeURIPrefix) {
                let value = String(uri.dropFirst(Self.nodeURIPrefix.count))
                guard name == nil || name == value else {
                    throw RPCError(.certificate, "the certificate names two nodes (\(name!), \(value))")
                }
                name = value
            } else if uri.hasPrefix(Self.roleURIPrefix) {
                let value = String(uri.dropFirst(Self.roleURIPrefix.count))
                guard let role = NodeRole(rawValue: value) else {
                    throw RPCError(.certificate, "the certificate names an unknown role \"\(value)\"")
                }
                roles.insert(role)
            }
        }
        guard let name, !name.isEmpty else {
            throw RPCError(
                .certificate,
                "the certificate (subject \(certificate.subject)) names no Baton node; issue a new one with `baton certs --nodes NAME:ROLES`")
        }
        self.init(name: name, roles: roles)
    }

    /// The identity in a certificate as TLS presents it.
    public init(certificate: NIOSSLCertificate) throws(RPCError) {
        let parsed: Certificate
        do { parsed = try Certificate(derEncoded: try certificate.toDERBytes()) } catch {
            throw RPCError(.certificate, "cannot read the peer's certificate", cause: error)
        }
        try self.init(certificate: parsed)
    }

    /// The identity in the first certificate of a PEM chain (a node's own certificate file).
    public init(pem: String) throws(RPCError) {
        let parsed: Certificate
        do { parsed = try Certificate(pemEncoded: pem) } catch {
            throw RPCError(.certificate, "cannot read the certificate", cause: error)
        }
        try self.init(certificate: parsed)
    }

    public func holds(_ role: NodeRole) -> Bool { roles.contains(role) }

    /// "decode-0 (decode)".
    public var description: String { "\(name) (\(roles.isEmpty ? "no roles" : roles.listed))" }
}

/// Who is on the other end of a connection, as its certificate proves.
public enum NodePeer: Sendable, Hashable, CustomStringConvertible {
    /// A node with a certificate from the cluster CA.
    case node(NodeIdentity)
    /// Insecure (plaintext) mode: nothing is known; every check passes, as `--insecure` warns.
    case unauthenticated
    /// A TLS client that presented no certificate, admitted only where a listener serves routes open to
    /// anyone (a node joining the cluster): every check fails.
    case anonymous

    /// The peer's node name, nil when unauthenticated.
    public var name: String? {
        if case .node(let identity) = self { return identity.name }
        return nil
    }

    public var identity: NodeIdentity? {
        if case .node(let identity) = self { return identity }
        return nil
    }

    /// Whether the peer may act in `role` (always true when unauthenticated).
    public func holds(_ role: NodeRole) -> Bool {
        switch self {
        case .node(let identity): identity.holds(role)
        case .unauthenticated: true
        case .anonymous: false
        }
    }

    /// Whether the peer is node `name` (always true when unauthenticated).
    public func isNode(_ name: String) -> Bool {
        switch self {
        case .node(let identity): identity.name == name
        case .unauthenticated: true
        case .anonymous: false
        }
    }

    public var description: String {
        switch self {
        case .node(let identity): identity.description
        case .unauthenticated: "an unauthenticated peer (insecure mode)"
        case .anonymous: "a peer without a certificate"
        }
    }
}

/// Which node a client means to reach; checked against the server's certificate during the TLS handshake, so
/// nothing is sent to a node that is not the one intended.
public struct PeerExpectation: Sendable, Hashable, CustomStringConvertible {
    /// The node name the certificate must carry; nil accepts any name.
    public var name: String?
    /// A role the certificate must allow; nil accepts any.
    public var role: NodeRole?

    public init(name: String? = nil, role: NodeRole? = nil) {
        self.name = name
        self.role = role
    }

    /// Any node certificate from the cluster CA.
    public static let anyNode = PeerExpectation()

    /// The node named `name`, acting as `role`.
    public static func node(_ name: String, as role: NodeRole) -> PeerExpectation {
        PeerExpectation(name: name, role: role)
    }

    /// Any node that holds `role`.
    public static func role(_ role: NodeRole) -> PeerExpectation {
        PeerExpectation(role: role)
    }

    /// Throws unless `identity` meets the expectation; `address` names where the client connected.
    public func check(_ identity: NodeIdentity, at address: String) throws(RPCError) {
        if let name, identity.name != name {
            throw RPCError(
                .forbidden, "\(address) presents the certificate of \(identity), not of \(self): refusing to talk to it")
        }
        if let role, !identity.holds(role) {
            throw RPCError(
                .forbidden, "\(address) presents the certificate of \(identity), which may not act as \(role.rawValue)")
        }
    }

    public var description: String {
        switch (name, role) {
        case (let name?, let role?): "\(role.rawValue) node \(name)"
        case (let name?, nil): "node \(name)"
        case (nil, let role?): "a \(role.rawValue) node"
        case (nil, nil): "any cluster node"
        }
    }
}
