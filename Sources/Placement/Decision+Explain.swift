import Foundation

extension Decision {
    /// A human-readable explanation: mode, the answer, each candidate's score or exclusion reasons,
    /// and the pairs compared. `policy` supplies the weights shown in the score formulas.
    public func explainText(policy: PlacementPolicy) -> String {
        var lines: [String] = []
        let source = policy.source.map { "policy \($0), " } ?? ""
        lines.append("Placement of a \(promptTokens)-token prompt (\(source)strategy \(strategy.rawValue))")
        lines.append("Mode: \(mode.rawValue) — \(modeReason)")
        switch admission {
        case .admit(let pair):
            if let prefill = pair.prefill {
                lines.append("Answer: admit — prefill on \(prefill), decode on \(pair.decode)"
                    + " (KV over \(pair.link?.rawValue ?? "?"))")
            } else {
                lines.append("Answer: admit — whole request on \(pair.decode)")
            }
        case .reject(let reason, let retryAfter):
            lines.append("Answer: 429 reject (retry after \(fmt(retryAfter)) s) — \(reason)")
        case .unavailable(let reason):
            lines.append("Answer: 503 unavailable — \(reason)")
        }
        for role in WorkerRole.allCases.sorted(by: { $0 == .prefill && $1 == .decode }) {
            let roleCandidates = candidates.filter { $0.role == role }
            if role == .prefill, mode == .decodeOnly { continue }
            let w = role == .prefill ? policy.scoring.prefill : policy.scoring.decode
            lines.append("")
            lines.append("\(role.rawValue.capitalized) candidates (score = \(fmt(w.compute))·compute + "
                + "\(fmt(w.bandwidth))·bandwidth − \(fmt(w.load))·load):")
            if roleCandidates.isEmpty { lines.append("  (no workers)") }
            let width = max(8, roleCandidates.map(\.worker.count).max() ?? 0)
            for candidate in roleCandidates {
                let name = candidate.worker.padding(toLength: width, withPad: " ", startingAt: 0)
                if let score = candidate.score, let rank = candidate.rank {
                    lines.append("  #\(rank) \(name)  score \(fixed(score.score))  compute \(fixed(score.compute))"
                        + "  bandwidth \(fixed(score.bandwidth))  load \(fixed(score.load))  \(candidate.outcome.rawValue)"
                        + "  [\(candidate.device)]")
                } else {
                    lines.append("  -  \(name)  \(candidate.outcome.rawValue): \(candidate.reasons.joined(separator: "; "))"
                        + "  [\(candidate.device)]")
                }
            }
        }
        if !pairs.isEmpty {
            lines.append("")
            lines.append("Pairs compared (score = prefill + decode − \(fmt(policy.scoring.linkWeight))·link cost), best first:")
            for pair in pairs {
                if let prefill = pair.prefill {
                    lines.append("  \(prefill) → \(pair.decode)  link \(pair.link?.rawValue ?? "?") "
                        + "(cost \(fmt(pair.linkCost)))  score \(fixed(pair.score))")
                } else {
                    lines.append("  \(pair.decode) alone  score \(fixed(pair.score))")
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The decision as pretty-printed JSON with snake_case keys, sorted.
    public func explainJSON() throws(PlacementError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(self), as: UTF8.self)
        } catch {
            throw PlacementError(.invalidArgument, "cannot encode decision", cause: UnderlyingError(description: "\(error)"))
        }
    }

    private func fixed(_ value: Double) -> String {
        String(format: "%6.3f", value)
    }
}
