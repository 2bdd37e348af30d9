import ArgumentParser
import RPC
import Router

/// How a cluster process proves who it is: `--certs DIR --node NAME` (mutual TLS with the cluster CA),
/// or `--insecure` (plaintext, for throw-away experiments only).
struct NodeTLSOptions: ParsableArguments {
    @Option(name: .long, help: "Directory written by `baton certs` (ca.pem, NODE.pem, NODE-key.pem).")
    var certs: String?

    @Option(name: .long, help: "This node's name in --certs.")
    var node: String?

    @Flag(name: .long, help: "Plaintext HTTP/2 without certificates: unencrypted and unauthenticated.")
    var insecure = false

    func validate() throws {
        if insecure && (certs != nil || node != nil) {
            throw ValidationError("give either --certs DIR --node NAME or --insecure, not both")
        }
        if !insecure && (certs == nil || node == nil) {
            throw ValidationError("give --certs DIR and --node NAME (or --insecure for plaintext)")
        }
    }

    /// The node's TLS identity; nil in insecure mode.
    func tls() throws -> NodeTLS? {
        guard !insecure, let certs, let node else { return nil }
        return try NodeTLS.load(directory: certs, node: node)
    }
}

/// `--placement HOST:PORT`: where the placement service listens.
struct PlacementAddressOptions: ParsableArguments {
    @Option(name: .long, help: "HOST:PORT of the placement service.")
    var placement: String = "127.0.0.1:7400"

    func validate() throws {
        _ = try endpoint()
    }

    func endpoint() throws -> (host: String, port: Int) {
        try Endpoint.parse(placement, option: "--placement")
    }
}

/// `HOST:PORT` command-line values.
enum Endpoint {
    /// "HOST:PORT" → host and port. An IPv6 host may be bracketed ("[::1]:7400"); an `http://` or `https://`
    /// prefix and a trailing "/" are accepted, since addresses are often copied from URLs.
    static func parse(_ text: String, option: String) throws -> (host: String, port: Int) {
        var address = Substring(text)
        for scheme in ["https://", "http://"] where address.hasPrefix(scheme) {
            address = address.dropFirst(scheme.count)
        }
        while address.hasSuffix("/") { address = address.dropLast() }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (0...65_535).contains(port)
        else { throw ValidationError("\(option) takes HOST:PORT, got \"\(text)\"") }
        var host = address[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw ValidationError("\(option) takes HOST:PORT, got \"\(text)\"") }
        return (String(host), port)
    }
}

/// The API listener's bounds on clients (`baton router`, `baton serve`), applied to a `RouterConfiguration`.
struct APIListenerOptions: ParsableArguments {
    @Option(name: .customLong("max-connections"), help: "Open API client connections in all; more are closed on accept.")
    var maximumConnections = 1024
    @Option(name: .customLong("max-connections-per-client"), help: "Open API connections from one client IP address.")
    var maximumConnectionsPerClient = 256
    @Option(name: .customLong("request-read-timeout"), help: "Seconds a client connection has to deliver each whole request (head and body) once it is ready for one.")
    var requestReadTimeout: Double = 30
    @Option(name: .customLong("idle-connection-timeout"), help: "Seconds a client connection may stay open with no request in progress.")
    var idleConnectionTimeout: Double = 30

    func validate() throws {
        guard maximumConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (1...maximumConnections).contains(maximumConnectionsPerClient) else {
            throw ValidationError("--max-connections-per-client must be in 1...--max-connections (\(maximumConnections))")
        }
        guard requestReadTimeout > 0, requestReadTimeout <= 3600 else { throw ValidationError("--request-read-timeout must be in (0, 3600] seconds") }
        guard idleConnectionTimeout > 0, idleConnectionTimeout <= 86_400 else {
            throw ValidationError("--idle-connection-timeout must be in (0, 86400] seconds")
        }
    }

    func apply(to configuration: inout RouterConfiguration) {
        configuration.maximumConnections = maximumConnections
        configuration.maximumConnectionsPerClient = maximumConnectionsPerClient
        configuration.requestReadTimeout = .milliseconds(Int(requestReadTimeout * 1000))
        configuration.idleConnectionTimeout = .milliseconds(Int(idleConnectionTimeout * 1000))
    }
}

/// A cluster node's listener bounds (`baton worker`, `baton placement`), as `NodeServerLimits`.
struct NodeListenerOptions: ParsableArguments {
    @Option(name: .customLong("handshake-timeout"), help: "Seconds a new connection has to finish its TLS handshake and HTTP/2 preface.")
    var handshakeTimeout: Double = 10
    @Option(name: .customLong("idle-connection-timeout"), help: "Seconds a connection may carry no byte either way before it is closed.")
    var idleConnectionTimeout: Double = 60
    @Option(name: .customLong("max-connections"), help: "Open connections in all; more are closed on accept.")
    var maximumConnections = 1024
    @Option(name: .customLong("max-connections-per-peer"), help: "Open connections from one IP address.")
    var maximumConnectionsPerPeer = 64

    func validate() throws {
        guard handshakeTimeout > 0, handshakeTimeout <= 600 else { throw ValidationError("--handshake-timeout must be in (0, 600] seconds") }
        guard idleConnectionTimeout > 0, idleConnectionTimeout <= 86_400 else {
            throw ValidationError("--idle-connection-timeout must be in (0, 86400] seconds")
        }
        guard maximumConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (1...maximumConnections).contains(maximumConnectionsPerPeer) else {
            throw ValidationError("--max-connections-per-peer must be in 1...--max-connections (\(maximumConnections))")
        }
    }

    var limits: NodeServerLimits {
        var limits = NodeServerLimits()
        limits.handshakeTimeout = .milliseconds(Int(handshakeTimeout * 1000))
        limits.idleConnectionTimeout = .milliseconds(Int(idleConnectionTimeout * 1000))
        limits.maximumConnections = maximumConnections
        limits.maximumConnectionsPerPeer = maximumConnectionsPerPeer
        return limits
    }
}
