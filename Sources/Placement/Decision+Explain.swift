import Foundation

extension Decision {
    /// A human-readable explanation: mode, the answer, each candidate's score or exclusion reasons,
    /// and the pairs compared. `policy` supplies the weights shown in the score formulas.
    public func explainText(policy: PlacementPolicy) -> String {
        var lines: [String] = []
        let source = policy.source.map { "policy \($0), " } ?? ""
        lines.append("Placement of a \(promptTokens)-token prompt (\(source)strategy \(strategy.rawValue))")
        lines.append("Mode: \(mode.rawValue) (rule \(modeRule)) — \(modeReason)")
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
            if role == .prefill, roleCandidates.isEmpty, mode == .decodeOnly { continue }
            let w = role == .prefill ? policy.scoring.prefill : policy.scoring.decode
            lines.append("")
            lines.append("\(role.rawValue.capitalized) candidates (score = \(fmt(w.compute))·compute + "
                + "\(fmt(w.bandwidth))·bandwidth + \(fmt(w.cache))·cache − \(fmt(w.load))·load; cache = share of the "
                + "prompt its \(role.rawValue) cache holds):")
            if roleCandidates.isEmpty { lines.append("  (no workers)") }
            let width = max(8, roleCandidates.map(\.worker.count).max() ?? 0)
            for candidate in roleCandidates {
                let name = candidate.worker.padding(toLength: width, withPad: " ", startingAt: 0)
                if let score = candidate.score, let rank = candidate.rank {
                    lines.append("  #\(rank) \(name)  score \(fixed(score.score))  compute \(fixed(score.compute))"
                        + "  bandwidth \(fixed(score.bandwidth))  cache \(fixed(score.cache)) (\(score.cachedTokens) tok)"
                        + "  load \(fixed(score.load))  \(candidate.outcome.rawValue)  [\(candidate.device)]")
                } else {
                    lines.append("  -  \(name)  \(candidate.outcome.rawValue): \(candidate.reasons.joined(separator: "; "))"
                        + "  [\(candidate.device)]")
                }
            }
        }
        let whys = [WorkerRole.prefill, .decode].compactMap { role in
            whyChosen(role, policy: policy).map { "Why \(role.rawValue): \($0)" }
        }
        if !whys.isEmpty {
            lines.append("")
            lines += whys
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

    /// Why the chosen worker of `role` won: its terms against the best-ranked other candidate's; nil when none was
    /// chosen for the role.
    func whyChosen(_ role: WorkerRole, policy: PlacementPolicy) -> String? {
        let ranked = candidates.filter { $0.role == role && $0.score != nil }
        guard let winner = ranked.first(where: { $0.outcome == .chosen }), let won = winner.score else { return nil }
        let w = role == .prefill ? policy.scoring.prefill : policy.scoring.decode
        func terms(_ s: Score) -> String {
            "compute +\(fmt2(w.compute * s.compute)), bandwidth +\(fmt2(w.bandwidth * s.bandwidth)), cache "
                + "+\(fmt2(w.cache * s.cache)) (\(s.cachedTokens) of \(promptTokens) tokens cached), load −\(fmt2(w.load * s.load))"
        }
        var text = "\(winner.worker) scored \(fmt2(won.score)) (\(terms(won)))"
        if let other = ranked.first(where: { $0.worker != winner.worker }), let lost = other.score {
            text += " against \(other.worker)'s \(fmt2(lost.score)) (\(terms(lost)))"
            if won.score == lost.score {
                text += won.load != lost.load ? "; tie, lower load wins" : "; tie, the name wins"
            } else if won.score < lost.score {
                text += "; lower alone, but part of the best pair (the link cost and the other role's score count there)"
            }
        } else {
            text += ", the only eligible candidate"
        }
        return text
    }

    private func fmt2(_ value: Double) -> String {
        String(format: "%.2f", value)
    }

    private func fixed(_ value: Double) -> String {
        String(format: "%6.3f", value)
    }
}
