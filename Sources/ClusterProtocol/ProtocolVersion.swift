/// Versions of the wire contract in `Protos/baton/v1`.
public enum BatonProtocol {
    /// The `protocol_version` this build speaks. A peer announcing another version is refused at the handshake.
    public static let version: UInt32 = 1
    /// HTTP/2 path of a KV transfer stream.
    public static let transferPath = "/baton.v1.KVTransfer/Transfer"
}
