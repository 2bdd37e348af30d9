/// `least_loaded`'s best pair without scoring every prefill × decode pair: with hundreds of workers per role that
/// is ~10⁵ pairs per request, too slow for a router (and for `baton simulate`, which runs the same function).
///
/// A pair's score is `prefill score + decode score − link_weight · link cost`, and the link is a property of the
/// pair: the same worker (local), the same host (shared memory), both with RDMA, or TCP. For one prefill worker
/// the decode candidates of one link kind all pay the same link cost, so among them the order is the decode pool's
/// own (score, then load, then name), and the best of each kind is found by walking that kind's candidates from
/// the top: four short walks per prefill candidate instead of one pair per decode candidate.
///
/// The answer is the one scoring every pair gives, bit for bit: each pair compared is scored by
/// `Placement.pairScore` with the same expression, and a walk stops only where the pool order proves that nothing
/// further can win — the score can only fall along a walk, rounding included, since `a + b − c` never decreases
/// as `b` grows; among equal scores the combined load only grows with the decode load; among equal scores and
/// loads the pair key only grows with the decode name.
struct PairSearch {
    typealias Scored = RolePool.Scored

    /// Decode candidates of one kind in the pool's order, with where to jump past runs that cannot win.
    struct Walk {
        /// Indices into `decode`, in its order.
        var members: [Int] = []
        /// Position of the next member whose (score, load) differs: the ones between lose to this one on the name.
        var nextDistinct: [Int] = []
        /// Position of the next member whose score differs: used once the combined load already loses.
        var nextScore: [Int] = []
        /// Position of the next member on another host (nil host: the next member): skips a host's run.
        var nextHost: [Int] = []

        /// Fills the jump tables. `groups` (for the members sorted by host) ends every run at a change of host.
        mutating func finish(_ decode: [Scored], groups: Bool = false) {
            let n = members.count
            nextDistinct = [Int](repeating: n, count: n)
            nextScore = [Int](repeating: n, count: n)
            nextHost = [Int](repeating: n, count: n)
            guard n > 1 else { return }
            for i in stride(from: n - 2, through: 0, by: -1) {
                let a = decode[members[i]], b = decode[members[i + 1]]
                if groups, a.worker.profile.transports.sharedMemoryHostID != b.worker.profile.transports.sharedMemoryHostID {
                    (nextDistinct[i], nextScore[i], nextHost[i]) = (i + 1, i + 1, i + 1)
                    continue
                }
                let sameScore = a.score.score == b.score.score
                nextScore[i] = sameScore ? nextScore[i + 1] : i + 1
                nextDistinct[i] = sameScore && a.score.load == b.score.load ? nextDistinct[i + 1] : i + 1
                let host = a.worker.profile.transports.sharedMemoryHostID
                nextHost[i] = host != nil && host == b.worker.profile.transports.sharedMemoryHostID ? nextHost[i + 1] : i + 1
            }
        }
    }

    let decode: [Scored]
    let policy: PlacementPolicy
    private var byName: [String: Int] = [:]
    private var all = Walk()
    private var rdma = Walk()
    private var plain = Walk()
    /// The decode candidates that have a host id, grouped by host (each group in the pool's order), and where
    /// each host's group lies in it.
    private var hosts = Walk()
    private var hostRange: [String: Range<Int>] = [:]

    /// - Parameter decode: the decode pool's eligible candidates, in its order (score, load, name).
    init(decode: [Scored], policy: PlacementPolicy) {
        self.decode = decode
        self.policy = policy
        for (index, candidate) in decode.enumerated() {
            byName[candidate.worker.name] = index
            all.members.append(index)
            if candidate.worker.profile.transports.rdmaDevices.isEmpty {
                plain.members.append(index)
            } else {
                rdma.members.append(index)
            }
        }
        var grouped: [String: [Int]] = [:]
        for (index, candidate) in decode.enumerated() {
            if let host = candidate.worker.profile.transports.sharedMemoryHostID { grouped[host, default: []].append(index) }
        }
        for (host, members) in grouped {
            hostRange[host] = hosts.members.count..<(hosts.members.count + members.count)
            hosts.members += members
        }
        all.finish(decode)
        rdma.finish(decode)
        plain.finish(decode)
        hosts.finish(decode, groups: true)
    }

    /// The best pair with prefill candidate `p`, as scoring `p` with every decode candidate would find it.
    func best(for p: Scored) -> Placement.ScoredPair? {
        let name = p.worker.name
        let host = p.worker.profile.transports.sharedMemoryHostID
        var best: Placement.ScoredPair?
        func consider(_ candidate: Placement.ScoredPair?) {
            guard let candidate else { return }
            if best.map({ Placement.isBetter(candidate, than: $0) }) ?? true { best = candidate }
        }
        if let index = byName[name] {
            consider(Placement.pairScore(p, decode[index], link: .local, policy: policy))
        }
        if let host, let range = hostRange[host] {
            consider(walk(hosts, range, p, link: .sharedMemory, skippingHost: nil, skippingName: name))
        }
        if !p.worker.profile.transports.rdmaDevices.isEmpty {
            consider(walk(rdma, 0..<rdma.members.count, p, link: .rdma, skippingHost: host, skippingName: name))
            consider(walk(plain, 0..<plain.members.count, p, link: .tcp, skippingHost: host, skippingName: name))
        } else {
            consider(walk(all, 0..<all.members.count, p, link: .tcp, skippingHost: host, skippingName: name))
        }
        return best
    }

    /// The best pair of `p` with a member of `walk` at positions `range`, all of which are `link` away from it
    /// except the ones on host `skippingHost` (shared memory) and `p` itself (local), which are left out.
    private func walk(_ walk: Walk, _ range: Range<Int>, _ p: Scored, link: LinkKind, skippingHost: String?,
                      skippingName: String) -> Placement.ScoredPair? {
        var best: Placement.ScoredPair?
        var i = range.lowerBound
        while i < range.upperBound {
            let d = decode[walk.members[i]]
            if let skippingHost, d.worker.profile.transports.sharedMemoryHostID == skippingHost {
                i = walk.nextHost[i]
                continue
            }
            if d.worker.name == skippingName {
                i += 1
                continue
            }
            let candidate = Placement.pairScore(p, d, link: link, policy: policy)
            guard let current = best else {
                best = candidate
                i = walk.nextDistinct[i]
                continue
            }
            // Scores only fall along the walk: one below the best ends it.
            if candidate.pair.score != current.pair.score { break }
            // Same score, and the rest of this score's run has at least this decode load: none can win.
            if candidate.load > current.load {
                i = walk.nextScore[i]
                continue
            }
            if Placement.isBetter(candidate, than: current) { best = candidate }
            i = walk.nextDistinct[i]
        }
        return best
    }
}
