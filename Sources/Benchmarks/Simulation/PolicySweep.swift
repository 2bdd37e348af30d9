import Foundation
import Placement

/// `baton simulate --sweep`: variants of a policy file and of the cluster's role split, each to be simulated on the
/// same workload, so that the goodput of each can be compared before a policy is deployed. Every variant changes
/// one thing from the given policy and cluster.
public enum PolicySweep {
    public struct Variant: Sendable {
        /// What differs from the given set-up, as a policy-file key would say it.
        public var label: String
        public var policy: PlacementPolicy
        public var cluster: SimulatedCluster
    }

    /// The given set-up first, then: the prefill share of single-role workers, `disaggregation.min_prompt_tokens`,
    /// the scoring weights (load, compute/bandwidth, link), `balancing.strategy`, `admission.policy` and
    /// `slo.max_queue_depth`. `promptTokens` (the workload's prompt lengths) places the disaggregation thresholds.
    public static func variants(policy: PlacementPolicy, cluster: SimulatedCluster, promptTokens: [Int]) -> [Variant] {
        var result = [Variant(label: "as given", policy: policy, cluster: cluster)]
        func policyVariant(_ label: String, _ change: (inout PlacementPolicy) -> Void) {
            var changed = policy
            change(&changed)
            guard changed != policy else { return }
            result.append(Variant(label: label, policy: changed, cluster: cluster))
        }

        // Role split: the most compute-rich workers (GFLOP/s per GB/s) prefill, the rest decode.
        let n = cluster.workers.count
        if n >= 2 {
            let order = cluster.workers.indices.sorted { a, b in
                let pa = cluster.workers[a].profile, pb = cluster.workers[b].profile
                let ra = pa.sgemmGFLOPS / max(pa.memoryReadGBps, 1e-9), rb = pb.sgemmGFLOPS / max(pb.memoryReadGBps, 1e-9)
                return ra != rb ? ra > rb : pa.name < pb.name
            }
            let current = cluster.workers.filter { $0.roles == [.prefill] }.count
            var counts: [Int] = []
            for share in [0.2, 0.25, 1.0 / 3, 0.5, 2.0 / 3, 0.75] {
                let k = min(n - 1, max(1, Int((Double(n) * share).rounded())))
                if !counts.contains(k) { counts.append(k) }
            }
            for k in counts {
                var changed = cluster
                for (rank, index) in order.enumerated() { changed.workers[index].roles = rank < k ? [.prefill] : [.decode] }
                guard changed != cluster || current != k else { continue }
                result.append(Variant(label: "roles: \(k) prefill, \(n - k) decode", policy: policy, cluster: changed))
            }
            var both = cluster
            for index in both.workers.indices { both.workers[index].roles = [.decode, .prefill] }
            if both != cluster { result.append(Variant(label: "roles: all \(n) both", policy: policy, cluster: both)) }
        }

        // Disaggregation thresholds around the workload's prompt lengths, plus always and never.
        let sorted = promptTokens.sorted()
        var thresholds = [0, 1_000_000]
        for q in [0.25, 0.5, 0.75] where !sorted.isEmpty {
            thresholds.append(sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] + 1)
        }
        for t in Set(thresholds).sorted() {
            policyVariant(t >= 1_000_000 ? "disaggregation.min_prompt_tokens: never (\(t))" : "disaggregation.min_prompt_tokens: \(t)") {
                $0.disaggregation.minPromptTokens = t
            }
        }

        for load in [0.0, 0.25, 1, 2] {
            policyVariant("scoring.{prefill,decode}.load: \(fmtWeight(load))") {
                $0.scoring.prefill.load = load
                $0.scoring.decode.load = load
            }
        }
        policyVariant("scoring: prefill and decode weigh compute and bandwidth alike (0.5 each)") {
            $0.scoring.prefill.compute = 0.5
            $0.scoring.prefill.bandwidth = 0.5
            $0.scoring.decode.compute = 0.5
            $0.scoring.decode.bandwidth = 0.5
        }
        for weight in [0.0, 1] {
            policyVariant("scoring.link_weight: \(fmtWeight(weight))") { $0.scoring.linkWeight = weight }
        }
        for strategy in PlacementPolicy.BalancingStrategy.allCases {
            policyVariant("balancing.strategy: \(strategy.rawValue)") { $0.balancing.strategy = strategy }
        }
        for admission in PlacementPolicy.AdmissionPolicy.allCases {
            policyVariant("admission.policy: \(admission.rawValue)") { $0.admission.policy = admission }
        }
        for depth in [1, 2, 8, 16, 64] {
            policyVariant("slo.max_queue_depth: \(depth)") { $0.slo.maxQueueDepth = depth }
        }
        return result
    }

    static func fmtWeight(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
