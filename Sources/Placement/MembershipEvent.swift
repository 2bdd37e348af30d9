import Foundation

/// One entry of the membership log. The log is the truth; `ClusterState` is its fold.
///
/// JSON form, one object per line: `{"event": "joined", "format": 2, "time": <seconds since 1970>,
/// "worker": NAME, …}` with `profile` + `roles` (+ `address`, `model_fingerprint`) for joined, `roles`
/// (+ `note`) for role_assigned, `load` (+ `draining: true`) for heartbeat.
///
/// Formats: 1 (no `format` key) had no address, fingerprint, note or draining; 2 adds them as optional
/// keys (and, later, `incarnation` on joined), so format-1 logs read unchanged. A line with a higher format was written by a newer build and
/// is refused (`PlacementError.Code.unsupportedLogFormat`) rather than misread.
public enum MembershipEvent: Sendable, Equatable {
    /// A worker registered (or re-registered) with its profile, the roles it offers, where it serves its
    /// peers and the model it serves.
    /// `incarnation` (a `WorkerIncarnation`) tells a restarted worker from its former self.
    case joined(profile: DeviceProfile, roles: [WorkerRole], address: MemberAddress? = nil,
                modelFingerprint: String? = nil, incarnation: String? = nil, at: Date)
    /// The placement service assigned roles to a worker (the offered roles its policy allows); `note`
    /// says why roles were withheld.
    case roleAssigned(worker: String, roles: [WorkerRole], note: String? = nil, at: Date)
    /// A worker reported its load, and whether it is draining (finishing in-flight requests, taking no
    /// new ones). A heartbeat from a lost worker makes it active (or draining) again.
    case heartbeat(worker: String, load: WorkerLoad, draining: Bool = false, at: Date)
    /// No heartbeat within the timeout: the worker gets no new requests until it heartbeats again.
    case heartbeatLost(worker: String, at: Date)
    /// A worker deregistered (clean shutdown) or was removed.
    case left(worker: String, at: Date)

    /// The log format this build writes, and the newest it reads.
    public static let currentFormat = 2

    public var worker: String {
        switch self {
        case .joined(let profile, _, _, _, _, _): profile.name
        case .roleAssigned(let worker, _, _, _), .heartbeat(let worker, _, _, _), .heartbeatLost(let worker, _),
             .left(let worker, _): worker
        }
    }

    public var time: Date {
        switch self {
        case .joined(_, _, _, _, _, let at), .roleAssigned(_, _, _, let at), .heartbeat(_, _, _, let at),
             .heartbeatLost(_, let at), .left(_, let at): at
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
        case event, format, time, worker, profile, roles, load, address, note, draining, incarnation
        case modelFingerprint = "model_fingerprint"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let format = try c.decodeIfPresent(Int.self, forKey: .format) ?? 1
        guard (1...Self.currentFormat).contains(format) else { throw UnsupportedLogFormat(format: format) }
        let kind = try c.decode(String.self, forKey: .event)
        // Times are plain seconds since 1970 whatever the decoder's date strategy, so the log reads the same everywhere.
        let at = Date(timeIntervalSince1970: try c.decode(Double.self, forKey: .time))
        switch kind {
        case "joined":
            let profile = try c.decode(DeviceProfile.self, forKey: .profile)
            self = .joined(profile: profile, roles: try c.decode([WorkerRole].self, forKey: .roles),
                           address: try c.decodeIfPresent(MemberAddress.self, forKey: .address),
                           modelFingerprint: try c.decodeIfPresent(String.self, forKey: .modelFingerprint),
                           incarnation: try c.decodeIfPresent(String.self, forKey: .incarnation), at: at)
        case "role_assigned":
            self = .roleAssigned(worker: try c.decode(String.self, forKey: .worker),
                                 roles: try c.decode([WorkerRole].self, forKey: .roles),
                                 note: try c.decodeIfPresent(String.self, forKey: .note), at: at)
        case "heartbeat":
            self = .heartbeat(worker: try c.decode(String.self, forKey: .worker),
                              load: try c.decode(WorkerLoad.self, forKey: .load),
                              draining: try c.decodeIfPresent(Bool.self, forKey: .draining) ?? false, at: at)
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
        try c.encode(Self.currentFormat, forKey: .format)
        try c.encode(time.timeIntervalSince1970, forKey: .time)
        try c.encode(worker, forKey: .worker)
        switch self {
        case .joined(let profile, let roles, let address, let fingerprint, let incarnation, _):
            try c.encode(profile, forKey: .profile)
            try c.encode(roles, forKey: .roles)
            try c.encodeIfPresent(address, forKey: .address)
            try c.encodeIfPresent(fingerprint, forKey: .modelFingerprint)
            try c.encodeIfPresent(incarnation, forKey: .incarnation)
        case .roleAssigned(_, let roles, let note, _):
            try c.encode(roles, forKey: .roles)
            try c.encodeIfPresent(note, forKey: .note)
        case .heartbeat(_, let load, let draining, _):
            try c.encode(load, forKey: .load)
            if draining { try c.encode(true, forKey: .draining) }
        case .heartbeatLost, .left:
            break
        }
    }
}

/// A log line written in a format newer than this build reads.
struct UnsupportedLogFormat: Error, Sendable {
    let format: Int
}
