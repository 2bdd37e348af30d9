import Synchronization

/// Fires once when no progress was reported for `timeout`: the transport uses it to close a stream whose
/// peer went silent, which wakes every pending read and write. Thread-safe.
public final class Watchdog: Sendable {
    public let timeout: Duration
    private struct State {
        var deadline: ContinuousClock.Instant?
        var fired = false
    }
    private let state: Mutex<State>

    public init(timeout: Duration) {
        self.timeout = timeout
        self.state = Mutex(State(deadline: .now + timeout))
    }

    public var seconds: Double { timeout / .seconds(1) }

    public var fired: Bool { state.withLock { $0.fired } }

    /// Progress: restart the countdown.
    public func touch() {
        state.withLock { $0.deadline = .now + timeout }
    }

    /// Stop counting (while local work, not the peer, is the one taking time).
    public func pause() {
        state.withLock { $0.deadline = nil }
    }

    /// Runs until cancelled or fired; calls `onFire` once if the deadline passes.
    public func run(onFire: @Sendable () -> Void) async {
        while !Task.isCancelled {
            let next: ContinuousClock.Instant? = state.withLock { state in
                guard let deadline = state.deadline else { return .now + .milliseconds(50) }
                if deadline <= .now {
                    state.fired = true
                    return nil
                }
                return deadline
            }
            guard let next else {
                onFire()
                return
            }
            do { try await Task.sleep(until: next, clock: .continuous) } catch { return }
        }
    }

    /// Starts `run` in a task that the caller must cancel when done.
    public func start(onFire: @escaping @Sendable () -> Void) -> Task<Void, Never> {
        Task { await self.run(onFire: onFire) }
    }
}
