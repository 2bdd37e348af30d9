import Foundation
import Placement

extension ClusterStatus {
    /// The status as `baton cluster status` prints it: the policy and log in a header, then one row per
    /// worker (name, status, roles, address, ISA path, cores, GFLOP/s, GB/s, queue, active, free KV, prefix hit rate,
    /// KV bytes sent and saved by decode workers' prefix caches, transports).
    /// Roles are the assigned ones; a role offered but withheld by the policy shows as `-role`.
    public func renderedTable() -> String {
        let time = ISO8601DateFormatter()
        var lines = [
            "Policy: \(policyFile) (loaded \(time.string(from: policyLoadedAt)))",
        ]
        if let policyError {
            lines.append("Policy reload FAILED, the policy above stays in force: \(policyError)")
        }
        lines.append("Membership log: \(events) events; \(workers.count) worker\(workers.count == 1 ? "" : "s")")
        guard !workers.isEmpty else {
            lines.append("(no workers registered)")
            return lines.joined(separator: "\n")
        }
        let header = ["NAME", "STATUS", "ROLES", "ADDRESS", "ISA", "CORES", "GFLOP/S", "GB/S", "QUEUE", "ACTIVE", "FREE KV", "PREFIX HIT", "KV SENT/SAVED", "TRANSPORTS"]
        let rows: [[String]] = workers.map { worker in
            let withheld = worker.offeredRoles.filter { !worker.assignedRoles.contains($0) }
            let roles = worker.assignedRoles.map(\.rawValue) + withheld.map { "-" + $0.rawValue }
            let freeKV = worker.load.totalKVBlocks.map { "\(worker.load.freeKVBlocks)/\($0)" } ?? "\(worker.load.freeKVBlocks)"
            // Share of the prompt tokens this worker computed that its prefix cache held instead.
            let prefixHit: String = switch (worker.load.promptTokens, worker.load.cachedPromptTokens) {
            case (let all?, let cached?) where all > 0: "\(Int((Double(cached) / Double(all) * 100).rounded()))%"
            case (_?, _?): "0%"
            default: "-"
            }
            // KV bytes that crossed the network for it, and those a decode worker's prefix cache held instead.
            let kv: String = switch (worker.load.kvBytesShipped, worker.load.kvBytesNotShipped) {
            case (let sent?, let saved?): "\(ByteCount.format(sent))/\(ByteCount.format(saved))"
            default: "-"
            }
            return [
                worker.name, worker.status, roles.isEmpty ? "none" : roles.joined(separator: ","),
                worker.address.map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" } ?? "?",
                worker.profile.isa ?? "?", String(worker.profile.cores),
                DeviceProfile.figure(worker.profile.sgemmGFLOPS), DeviceProfile.figure(worker.profile.memoryReadGBps),
                String(worker.load.queueDepth), String(worker.load.activeSequences), freeKV, prefixHit, kv,
                worker.transports.joined(separator: ","),
            ]
        }
        let numeric: Set<Int> = [5, 6, 7, 8, 9, 10, 11, 12]
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            let cells = row.indices.map { column in
                let pad = String(repeating: " ", count: widths[column] - row[column].count)
                return numeric.contains(column) ? pad + row[column] : row[column] + pad
            }
            lines.append(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        return lines.joined(separator: "\n")
    }

    /// The status as pretty-printed JSON (snake_case keys, sorted; ISO 8601 times), as `--json` prints it.
    public func renderedJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
