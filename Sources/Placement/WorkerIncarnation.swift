import Foundation

/// One run of a worker process: its start time and a random part, written `<start ms since 1970>-<16 hex>`.
/// A worker restarted under the same name has a new incarnation that starts later, so a registration or
/// heartbeat still arriving from the former process (a partitioned or hung one) is recognised as stale and
/// refused instead of overwriting the live worker's address.
public struct WorkerIncarnation: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since 1970 when the process started.
    public let startedMs: Int64
    public let random: UInt64

    public init(startedMs: Int64, random: UInt64) {
        self.startedMs = startedMs
        self.random = random
    }

    /// A new incarnation for a process starting now.
    public static func now() -> WorkerIncarnation {
        WorkerIncarnation(startedMs: Int64(Date().timeIntervalSince1970 * 1000), random: UInt64.random(in: 0...UInt64.max))
    }

    /// Parses `<ms>-<hex>`; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = Int64(parts[0]), ms >= 0, parts[1].count == 16,
              let random = UInt64(parts[1], radix: 16) else { return nil }
        self.init(startedMs: ms, random: random)
    }

    public var description: String {
        let hex = String(random, radix: 16)
        return "\(startedMs)-\(String(repeating: "0", count: 16 - hex.count))\(hex)"
    }

    /// Older start first; equal starts are ordered by the random part, so two incarnations are never "equal
    /// age" unless they are the same.
    public static func < (a: WorkerIncarnation, b: WorkerIncarnation) -> Bool {
        (a.startedMs, a.random) < (b.startedMs, b.random)
    }
}
