import Foundation
import Placement

// The placement service's API bodies (JSON, snake_case keys), shared by the service and its clients.
// Paths are in `BatonProtocol.Placement`.

/// Where a worker serves its peers: the same value the membership log keeps.
public typealias WorkerAddress = MemberAddress

/// A worker chosen for a request: who it is and where to reach it.
public struct WorkerEndpoint: Codable, Sendable, Equatable {
    public var name: String
    public var address: WorkerAddress

    public init(name: String, address: WorkerAddress) {
        self.name = name
        self.address = address
    }
}

/// POST /v1/workers/register
public struct RegisterRequest: Codable, Sendable, Equatable {
    public var profile: DeviceProfile
    /// Roles the worker offers (its `--role`).
    public var roles: [WorkerRole]
    public var address: WorkerAddress
    /// The model the worker serves (its KV compatibility fingerprint); pairs must match.
    public var modelFingerprint: String
    /// The longest sequence (prompt and completion, tokens) the worker holds; `choose` refuses longer prompts.
    /// Optional on the wire (workers before it sent none).
    public var contextLength: Int?
    /// This worker process (`WorkerIncarnation`); a registration from a process older than the member's is refused.
    public var incarnation: String?

    public init(
        profile: DeviceProfile, roles: [WorkerRole], address: WorkerAddress, modelFingerprint: String,
        contextLength: Int? = nil, incarnation: String? = nil
    ) {
        self.profile = profile
        self.roles = roles
        self.address = address
        self.modelFingerprint = modelFingerprint
        self.contextLength = contextLength
        self.incarnation = incarnation
    }

    enum CodingKeys: String, CodingKey {
        case profile, roles, address, modelFingerprint = "model_fingerprint", contextLength = "context_length"
        case incarnation
    }
}

public struct RegisterResponse: Codable, Sendable, Equatable {
    public var name: String
    public var assignedRoles: [WorkerRole]
    public var heartbeatIntervalMs: Int

    public init(name: String, assignedRoles: [WorkerRole], heartbeatIntervalMs: Int) {
        self.name = name
        self.assignedRoles = assignedRoles
        self.heartbeatIntervalMs = heartbeatIntervalMs
    }

    enum CodingKeys: String, CodingKey {
        case name, assignedRoles = "assigned_roles", heartbeatIntervalMs = "heartbeat_interval_ms"
    }
}

/// POST /v1/workers/heartbeat. Answered 404 when the service does not know the worker: re-register.
public struct HeartbeatRequest: Codable, Sendable, Equatable {
    public var name: String
    public var load: WorkerLoad
    /// The worker is finishing in-flight requests and takes no new ones.
    public var draining: Bool
    /// The process sending it; a heartbeat from another process than the registered one is refused.
    public var incarnation: String?
    /// What the worker's prefix caches stored and evicted since its previous batch; nil when nothing changed (or
    /// from a worker that does not publish KV events).
    public var kvEvents: KVEventBatch?

    public init(name: String, load: WorkerLoad, draining: Bool = false, incarnation: String? = nil,
                kvEvents: KVEventBatch? = nil) {
        self.name = name
        self.load = load
        self.draining = draining
        self.incarnation = incarnation
        self.kvEvents = kvEvents
    }

    enum CodingKeys: String, CodingKey {
        case name, load, draining, incarnation, kvEvents = "kv_events"
    }
}

/// The answer to a heartbeat.
public struct HeartbeatResponse: Codable, Sendable, Equatable {
    /// Placement holds nothing trusted about the worker's caches (it missed a batch, restarted, or saw the worker
    /// lost): the next KV event batch must be a reset.
    public var resetKVEvents: Bool

    public init(resetKVEvents: Bool) {
        self.resetKVEvents = resetKVEvents
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        resetKVEvents = try c.decodeIfPresent(Bool.self, forKey: .resetKVEvents) ?? false
    }

    enum CodingKeys: String, CodingKey {
        case resetKVEvents = "reset_kv_events"
    }
}

/// POST /v1/workers/leave
public struct LeaveRequest: Codable, Sendable, Equatable {
    public var name: String
    /// The process leaving; a former process cannot remove its successor.
    public var incarnation: String?

    public init(name: String, incarnation: String? = nil) {
        self.name = name
        self.incarnation = incarnation
    }
}

/// One message of POST /v1/placement/watch: the whole membership as placement knows it, and the policy in force.
/// Sent when the stream opens, at once after every change, and at the heartbeat interval with fresh loads.
public struct MembershipSnapshot: Codable, Sendable, Equatable {
    /// Grows with every join, loss, departure, status, role or policy change; load updates keep it.
    public var version: UInt64
    /// The placement process (versions restart with it).
    public var placementIncarnation: String
    public var policy: PlacementPolicy
    /// The shortest event list that rebuilds the membership (`ClusterState.snapshotEvents`), loads included.
    public var events: [MembershipEvent]
    public var sentAt: Date
    /// The KV event batches for the router's prefix index since the stream's previous snapshot (or all of it);
    /// nil from a placement service that does not forward them.
    public var prefix: PrefixIndexUpdate?

    public init(version: UInt64, placementIncarnation: String, policy: PlacementPolicy, events: [MembershipEvent], sentAt: Date,
                prefix: PrefixIndexUpdate? = nil) {
        self.version = version
        self.placementIncarnation = placementIncarnation
        self.policy = policy
        self.events = events
        self.sentAt = sentAt
        self.prefix = prefix
    }

    /// The membership the events describe.
    public var state: ClusterState {
        var state = ClusterState()
        for event in events { state.apply(event) }
        return state
    }

    enum CodingKeys: String, CodingKey {
        case version, placementIncarnation = "placement_incarnation", policy, events, sentAt = "sent_at", prefix
    }
}

/// POST /v1/placement/choose
public struct ChooseRequest: Codable, Sendable, Equatable {
    public var promptTokens: Int
    /// Workers not to choose (for this request only): the router's own view of workers that failed it.
    public var exclude: [String]
    /// The prompt's token ids, when the caller has them: matched against placement's prefix index, so scores count
    /// what each worker's caches hold. Its length must be `promptTokens`.
    public var prompt: [Int32]?

    /// The most `prompt_tokens` may be whatever the workers say (16 Mi tokens).
    public static let maximumPromptTokens = 1 << 24

    public init(promptTokens: Int, exclude: [String] = [], prompt: [Int32]? = nil) {
        self.promptTokens = promptTokens
        self.exclude = exclude
        self.prompt = prompt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        exclude = try container.decodeIfPresent([String].self, forKey: .exclude) ?? []
        prompt = try container.decodeIfPresent([Int32].self, forKey: .prompt)
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case exclude, prompt
    }
}

public struct ChooseResponse: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable {
        case disaggregated
        case decodeOnly = "decode_only"
    }

    public var mode: Mode
    /// Present in disaggregated mode.
    public var prefill: WorkerEndpoint?
    public var decode: WorkerEndpoint
    /// Why (scores), as `baton placement explain` prints it.
    public var explanation: String
    /// The policy's `resume.max_migrations` (nil from a placement service that predates it).
    public var maxMigrations: Int?

    public init(mode: Mode, prefill: WorkerEndpoint?, decode: WorkerEndpoint, explanation: String, maxMigrations: Int? = nil) {
        self.mode = mode
        self.prefill = prefill
        self.decode = decode
        self.explanation = explanation
        self.maxMigrations = maxMigrations
    }
}

/// POST /v1/placement/explain (body: `ChooseRequest`): what `choose` would decide now and why, without choosing
/// (no load is counted against the workers, the balancing random state does not advance).
public struct ExplainResponse: Codable, Sendable, Equatable {
    public var decision: Decision
    /// The decision as `baton placement explain` prints it.
    public var text: String

    public init(decision: Decision, text: String) {
        self.decision = decision
        self.text = text
    }
}

/// Body of a refused choice (HTTP 429: overloaded, retry later; 503: no worker can serve).
public struct PlacementRefusal: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
    public var retryAfterSeconds: Double?

    public init(code: String, message: String, retryAfterSeconds: Double? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    enum CodingKeys: String, CodingKey {
        case code, message, retryAfterSeconds = "retry_after_seconds"
    }
}

/// GET /v1/cluster/status
public struct ClusterStatus: Codable, Sendable, Equatable {
    public struct Worker: Codable, Sendable, Equatable {
        public var name: String
        /// "active", "lost" or "draining".
        public var status: String
        public var offeredRoles: [WorkerRole]
        public var assignedRoles: [WorkerRole]
        public var address: WorkerAddress?
        public var profile: DeviceProfile
        public var load: WorkerLoad
        public var lastSeen: Date
        /// KV transports the worker can use: always "tls-h2", plus "shared-memory" and "rdma" when it has them.
        public var transports: [String]
        /// The registered worker process (`WorkerIncarnation`); nil for a worker that registered without one.
        public var incarnation: String?
        /// Blocks placement's prefix index holds for the worker (both caches); nil when it holds nothing trusted.
        public var indexedBlocks: Int?

        public init(
            name: String, status: String, offeredRoles: [WorkerRole], assignedRoles: [WorkerRole],
            address: WorkerAddress?, profile: DeviceProfile, load: WorkerLoad, lastSeen: Date, transports: [String],
            incarnation: String? = nil, indexedBlocks: Int? = nil
        ) {
            self.name = name
            self.status = status
            self.offeredRoles = offeredRoles
            self.assignedRoles = assignedRoles
            self.address = address
            self.profile = profile
            self.load = load
            self.lastSeen = lastSeen
            self.transports = transports
            self.incarnation = incarnation
            self.indexedBlocks = indexedBlocks
        }

        enum CodingKeys: String, CodingKey {
            case name, status, offeredRoles = "offered_roles", assignedRoles = "assigned_roles", address, profile, load
            case lastSeen = "last_seen", transports, incarnation, indexedBlocks = "indexed_blocks"
        }
    }

    public var workers: [Worker]
    public var policyFile: String
    public var policyLoadedAt: Date
    /// Why the last reload of the policy file failed (file:line:key and message) when it did, so the policy in
    /// force is older than the file; nil after a successful load.
    public var policyError: String?
    /// Events in the membership log since it was last compacted.
    public var events: Int
    /// The latest membership changes this service recorded since it started, oldest first (at most
    /// `PlacementRegistry.recentEventLimit`); nil from a service that does not report them.
    public var recentEvents: [Event]?

    /// One membership change as the status shows it (the log's event without the profile and load).
    public struct Event: Codable, Sendable, Equatable {
        public var time: Date
        public var worker: String
        /// The log's event name: `joined`, `role_assigned`, `heartbeat` (a status change: back from lost,
        /// draining), `heartbeat_lost` or `left`.
        public var event: String
        /// What changed, in words (roles, address, the policy's note); empty when the name says it all.
        public var detail: String

        public init(time: Date, worker: String, event: String, detail: String) {
            self.time = time
            self.worker = worker
            self.event = event
            self.detail = detail
        }
    }

    public init(
        workers: [Worker], policyFile: String, policyLoadedAt: Date, policyError: String? = nil, events: Int,
        recentEvents: [Event]? = nil
    ) {
        self.workers = workers
        self.policyFile = policyFile
        self.policyLoadedAt = policyLoadedAt
        self.policyError = policyError
        self.events = events
        self.recentEvents = recentEvents
    }

    enum CodingKeys: String, CodingKey {
        case workers, policyFile = "policy_file", policyLoadedAt = "policy_loaded_at", policyError = "policy_error", events
        case recentEvents = "recent_events"
    }
}

/// The JSON coders every placement message uses (ISO 8601 dates).
public enum PlacementJSON {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: Data(bytes))
    }
}
