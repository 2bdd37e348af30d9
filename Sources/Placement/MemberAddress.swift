/// Where a member of the cluster serves its peers (its node RPC listener), as it registered it. Kept in the
/// membership log so a restarted placement service can hand out the address before the worker re-registers.
///
/// The placement service's API sends it as is (`WorkerAddress` in module Cluster).
public struct MemberAddress: Codable, Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Same non-empty id on two workers ⇒ same host (shared memory possible).
    public var hostID: String

    public init(host: String, port: Int, hostID: String) {
        self.host = host
        self.port = port
        self.hostID = hostID
    }

    /// `host:port`, with IPv6 hosts bracketed.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    enum CodingKeys: String, CodingKey {
        case host, port, hostID = "host_id"
    }
}
