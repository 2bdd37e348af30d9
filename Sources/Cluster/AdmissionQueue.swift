import Synchronization

/// The router's queue of requests waiting for a worker with room, in arrival order. Only the request at the
/// head asks for a choice; the others sleep until something changes (a new membership snapshot, the head
/// leaving) or a short tick passes, so a freed worker goes to the oldest request. Bounded by the caller
/// (`join(limit:)`). Thread-safe.
final class AdmissionQueue: Sendable {
    private struct State {
        var order: [UInt64] = []
        var nextTicket: UInt64 = 0
        /// Bumped by every `signal`; a waiter that saw an older one returns at once (no lost wake-up).
        var epoch: UInt64 = 0
        var sleepers: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextSleeper: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Longest sleep between two looks at the cluster even when nothing signals.
    let tick: Duration

    init(tick: Duration = .milliseconds(250)) {
        self.tick = tick
    }

    /// Requests waiting now.
    var count: Int { state.withLock { $0.order.count } }
    var epoch: UInt64 { state.withLock { $0.epoch } }

    /// Whether `ticket` may ask for a choice now: it is first in line (nil: a newcomer, when nobody waits).
    func mayChoose(_ ticket: UInt64?) -> Bool {
        state.withLock { state in
            guard let ticket else { return state.order.isEmpty }
            return state.order.first == ticket
        }
    }

    /// Takes a place at the end of the line; nil when `limit` requests already wait.
    func join(limit: Int) -> UInt64? {
        state.withLock { state in
            guard state.order.count < limit else { return nil }
            state.nextTicket += 1
            state.order.append(state.nextTicket)
            return state.nextTicket
        }
    }

    /// Leaves the line (admitted, refused, timed out or cancelled) and wakes the others: the next one is first now.
    func leave(_ ticket: UInt64) {
        let removed = state.withLock { state in
            guard let index = state.order.firstIndex(of: ticket) else { return false }
            state.order.remove(at: index)
            return true
        }
        if removed { signal() }
    }

    /// Wakes every sleeper: the cluster may have room now.
    func signal() {
        let sleepers = state.withLock { state in
            state.epoch &+= 1
            defer { state.sleepers.removeAll() }
            return Array(state.sleepers.values)
        }
        for sleeper in sleepers { sleeper.resume() }
    }

    /// Sleeps until a `signal` after `epoch`, or `tick`, or `deadline`, whichever comes first.
    func sleep(after epoch: UInt64, until deadline: ContinuousClock.Instant) async {
        let wake = min(deadline, .now + tick)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id: UInt64? = state.withLock { state in
                guard state.epoch == epoch else { return nil }
                state.nextSleeper += 1
                state.sleepers[state.nextSleeper] = continuation
                return state.nextSleeper
            }
            guard let id else { return continuation.resume() }
            Task {
                try? await Task.sleep(until: wake, clock: .continuous)
                // Whoever takes the continuation out of the table resumes it, exactly once.
                self.state.withLock { $0.sleepers.removeValue(forKey: id) }?.resume()
            }
        }
    }
}
