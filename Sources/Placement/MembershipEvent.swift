import Foundation

/// One entry of the membership log. The log is the truth; `ClusterState` is its fold.
///
/// JSON form, one object per line: `{"event": "joined", "time": <seconds since 1970>, "worker": NAME, …}`
/// with `profile` + `roles` (joined), `roles` (role_assigned) or `load` (heartbeat).
public enum MembershipEvent: Sendable, Equatable {
    /// A worker registered (or re-registered) with its profile and the roles it offers.
    case joined(profile: DeviceProfile, roles: [WorkerRole], at: Date)
    /// The placement service assigned roles to a worker (a subset of the roles it offers).
    case roleAssigned(worker: String, roles: [WorkerRole], at: Date)
    /// A worker reported its load. A heartbeat from a lost worker makes it active again.
    case heartbeat(worker: String, load: WorkerLoad, at: Date)
    /// No heartbeat within the timeout: the worker gets no new requests until it heartbeats again.
    case heartbeatLost(worker: String, at: Date)
    /// A worker deregistered (clean shutdown) or was removed.
    case left(worker: String, at: Date)

    public var worker: String {
        switch self {
        case .joined(let profile, _, _): profile.name
        case .roleAssigned(let worker, _, _), .heartbeat(let worker, _, _), .heartbeatLost(let worker, _),
             .left(let worker, _): worker
        }
    }

    public var time: Date {
        switch self {
        case .joined(_, _, let at), .roleAssigned(_, _, let at), .heartbeat(_, _, let at), .heartbeatLost(_, let at),
             .left(_, let at): at
        }
    }

    /// The log's spelling of the event kind.
    public var kind: String {
        switch self {
        case .joined: "joined"
        case .roleAssigned: "role_assigned"
        case .heartbeat: "heartbeat"
        case .heartbeatLost: "heartbeat_lost"
        case .left: "left"
        }
    }
}

extension MembershipEvent: Codable {
    enum CodingKeys: String, CodingKey {
        case event, time, worker, profile, roles, load
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(String.self, forKey: .event)
        // Times are plain seconds since 1970 whatever the decoder's date strategy, so the log reads the same everywhere.
        let at = Date(timeIntervalSince1970: try c.decode(Double.self, forKey: .time))
        switch kind {
        case "joined":
            let profile = try c.decode(DeviceProfile.self, forKey: .profile)
            self = .joined(profile: profile, roles: try c.decode([WorkerRole].self, forKey: .roles), at: at)
        case "role_assigned":
            self = .roleAssigned(worker: try c.decode(String.self, forKey: .worker),
                                 roles: try c.decode([WorkerRole].self, forKey: .roles), at: at)
        case "heartbeat":
            self = .heartbeat(worker: try c.decode(String.self, forKey: .worker),
                              load: try c.decode(WorkerLoad.self, forKey: .load), at: at)
        case "heartbeat_lost":
            self = .heartbeatLost(worker: try c.decode(String.self, forKey: .worker), at: at)
        case "left":
            self = .left(worker: try c.decode(String.self, forKey: .worker), at: at)
        default:
            throw DecodingError.dataCorruptedError(forKey: .event, in: c, debugDescription: "unknown event '\(kind)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .event)
        try c.encode(time.timeIntervalSince1970, forKey: .time)
        try c.encode(worker, forKey: .worker)
        switch self {
        case .joined(let profile, let roles, _):
            try c.encode(profile, forKey: .profile)
            try c.encode(roles, forKey: .roles)
        case .roleAssigned(_, let roles, _):
            try c.encode(roles, forKey: .roles)
        case .heartbeat(_, let load, _):
            try c.encode(load, forKey: .load)
        case .heartbeatLost, .left:
            break
        }
    }
}
