/// One generation a draining decode worker paused and offered to move, from the offer until it either moved or
/// goes on here. Pure: `DecodeMover` feeds it what happened (the router's `MoveDecode`, the transfer's outcome, the
/// clock) and acts on the decision it settles on — once, whatever arrives after.
///
/// ```
/// offered ──ship(to:)──▶ shipping ──shipped()──▶ moved
///    │                      └──shipFailed()──▶ kept
///    └──keep() / expire()──▶ kept
/// ```
/// A shipment under way is not cut short by the deadline: the transfer has bounds of its own, and stopping it
/// half-way would leave the target waiting for KV that never comes.
struct DrainMove: Sendable, Equatable {
    enum State: Sendable, Equatable {
        /// Paused, waiting for the router until `deadline`.
        case offered(deadline: ContinuousClock.Instant)
        /// Its KV streams to `target`.
        case shipping(target: String)
        /// Its KV reached `target`: the generation is gone from here.
        case moved(target: String)
        /// It goes on here, for `reason`.
        case kept(reason: String)
    }

    /// What the offer came to.
    enum Decision: Sendable, Equatable {
        case moved(target: String)
        case kept(reason: String)
    }

    private(set) var state: State

    init(deadline: ContinuousClock.Instant) {
        state = .offered(deadline: deadline)
    }

    /// The decision, once there is one.
    var decision: Decision? {
        switch state {
        case .moved(let target): .moved(target: target)
        case .kept(let reason): .kept(reason: reason)
        case .offered, .shipping: nil
        }
    }

    /// The router asks to ship it to `target`; returns why not (already decided, or past the deadline at `now`).
    mutating func ship(to target: String, at now: ContinuousClock.Instant) -> String? {
        switch state {
        case .offered(let deadline):
            guard now < deadline else {
                state = .kept(reason: "no move came within the drain's move timeout")
                return "its move offer expired; it goes on here"
            }
            state = .shipping(target: target)
            return nil
        case .shipping(let other): return "it is already moving to \(other)"
        case .moved(let other): return "it moved to \(other) already"
        case .kept(let reason): return "it goes on here (\(reason))"
        }
    }

    /// The target confirmed every layer.
    mutating func shipped() -> Decision? {
        guard case .shipping(let target) = state else { return nil }
        state = .moved(target: target)
        return decision
    }

    /// The transfer failed: it goes on here.
    mutating func shipFailed(_ reason: String) -> Decision? {
        guard case .shipping(let target) = state else { return nil }
        state = .kept(reason: "moving it to \(target) failed: \(reason)")
        return decision
    }

    /// The router has nowhere to move it (or the consumer went away): it goes on here, unless a shipment started.
    mutating func keep(_ reason: String) -> Decision? {
        guard case .offered = state else { return nil }
        state = .kept(reason: reason)
        return decision
    }

    /// Past the deadline at `now` with no shipment: it goes on here.
    mutating func expire(at now: ContinuousClock.Instant) -> Decision? {
        guard case .offered(let deadline) = state, now >= deadline else { return nil }
        state = .kept(reason: "no move came within the drain's move timeout")
        return decision
    }
}
