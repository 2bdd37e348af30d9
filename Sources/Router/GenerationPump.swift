import Generation
import Synchronization

/// Consumes a backend's stream on the handler's own task — no hop between the backend's stream and the handler —
/// and makes every early end stop the generation on its workers.
///
/// Consumption ends early when the handler throws (the client went away), the handler returns ``Decision/stop``
/// (a stop string matched), the handler's task is cancelled, or `deadline` passes (a timer cancels the stream,
/// and the call throws ``RouterError/Code/timeout``); each cancels the stream, which frees the request's KV.
enum GenerationPump {
    /// What the handler wants after an event.
    enum Decision {
        case proceed
        /// Stop consuming and cancel the backend (a stop string matched).
        case stop
    }

    /// Calls `handle` for each event until the backend finishes, `handle` says stop, or `deadline` passes. Rethrows
    /// the backend's errors (as `RouterError`s) and `handle`'s. A stream that ends without `.finished`, or sends an
    /// event after it, is a ``RouterError/Code/backendFailure``.
    static func run(
        _ stream: GenerationStream, deadline: ContinuousClock.Instant,
        handle: (GenerationEvent) async throws -> Decision
    ) async throws {
        let timedOut = Atomic<Bool>(false)
        let timer = Task {
            guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
            timedOut.store(true, ordering: .releasing)
            stream.cancel(reason: "the request did not finish within the server's request timeout")
        }
        defer { timer.cancel() }
        do {
            var finished = false
            for try await event in stream {
                guard !finished else {
                    throw RouterError(.backendFailure, "the backend sent an event after finishing the generation")
                }
                if case .finished = event { finished = true }
                if try await handle(event) == .stop {
                    stream.cancel(reason: "a stop string matched")
                    return
                }
            }
            guard finished else {
                try Task.checkCancellation()
                throw RouterError(.backendFailure, "the backend ended the stream without finishing the generation")
            }
        } catch {
            stream.cancel(reason: "the client went away")
            if timedOut.load(ordering: .acquiring) {
                throw RouterError(.timeout, "the request did not finish within the server's request timeout")
            }
            if error is CancellationError { throw error }
            throw RouterError.wrapping(error)
        }
    }
}
