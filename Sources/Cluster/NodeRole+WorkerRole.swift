import Placement
import RPC

extension NodeRole {
    /// The certificate role that allows acting as a worker in `role`.
    public init(worker role: WorkerRole) {
        switch role {
        case .prefill: self = .prefill
        case .decode: self = .decode
        }
    }
}
