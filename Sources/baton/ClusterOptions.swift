import ArgumentParser
import RPC

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
