/// Versions of the wire contract in `Protos/baton/v1`.
public enum BatonProtocol {
    /// The `protocol_version` this build speaks. A peer announcing another version is refused at the handshake.
    public static let version: UInt32 = 3
    /// HTTP/2 path of a KV transfer stream.
    public static let transferPath = "/baton.v1.KVTransfer/Transfer"

    /// HTTP/2 paths of `WorkerControl` (see `worker.proto`).
    public enum WorkerControl {
        public static let submitPrefill = "/baton.v1.WorkerControl/SubmitPrefill"
        public static let openDecode = "/baton.v1.WorkerControl/OpenDecode"
        public static let cancel = "/baton.v1.WorkerControl/Cancel"
        public static let moveDecode = "/baton.v1.WorkerControl/MoveDecode"
        /// Answers 200 while the worker accepts requests, 503 while it drains.
        public static let health = "/health"
    }

    /// HTTP/2 paths of the placement service (JSON bodies; see `Cluster/PlacementWire.swift`).
    public enum Placement {
        public static let register = "/v1/workers/register"
        public static let heartbeat = "/v1/workers/heartbeat"
        public static let leave = "/v1/workers/leave"
        public static let choose = "/v1/placement/choose"
        /// A stream of `MembershipSnapshot`s (length-prefixed JSON) for routers to choose with.
        public static let watch = "/v1/placement/watch"
        /// What `choose` would answer now, with every candidate's score and reasons; chooses nothing.
        public static let explain = "/v1/placement/explain"
        public static let status = "/v1/cluster/status"
        public static let health = "/health"
    }
}
