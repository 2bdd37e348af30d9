/// A role a worker can play. A worker started with `--role both` offers both.
public enum WorkerRole: String, Codable, Sendable, CaseIterable, Comparable {
    case prefill, decode

    public static func < (lhs: WorkerRole, rhs: WorkerRole) -> Bool { lhs.rawValue < rhs.rawValue }
}
