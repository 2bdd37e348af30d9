/// Consumes a backend's stream on a child task so that leaving early always cancels it.
///
/// The handler reacts to each event on its own task (writing to the client may fail when the client has gone).
/// Whenever consumption ends before the backend finished — the handler throws, a stop string matched, the
/// deadline passed, or the handler's own task is cancelled — the child task iterating the backend's stream is
/// cancelled, which runs the stream's `onTermination` so the backend frees the request on its workers.
enum GenerationPump {
    /// What the handler wants after an event.
    enum Decision {
        case proceed
        /// Stop consuming and cancel the backend (e.g. a stop string matched).
        case stop
    }

    private enum Item: Sendable {
        case event(GenerationEvent)
        case failed(any Error)
        case ended
        case timedOut
    }

    /// Calls `handle` for each event until the backend finishes, `handle` returns ``Decision/stop``, or
    /// `deadline` passes (then throws ``RouterError/Code/timeout``). Rethrows the backend's and `handle`'s errors.
    /// A stream that ends without a `.finished` event throws ``RouterError/Code/backendFailure``.
    static func run(
        _ stream: AsyncThrowingStream<GenerationEvent, any Error>,
        deadline: ContinuousClock.Instant,
        handle: (GenerationEvent) async throws -> Decision
    ) async throws {
        let (items, continuation) = AsyncStream<Item>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await event in stream { continuation.yield(.event(event)) }
                    continuation.yield(.ended)
                } catch {
                    continuation.yield(.failed(error))
                }
            }
            group.addTask {
                do {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    continuation.yield(.timedOut)
                } catch {
                    // Cancelled: the generation ended first.
                }
            }
            do {
                var finished = false
                loop: for await item in items {
                    switch item {
                    case .event(let event):
                        guard !finished else {
                            throw RouterError(.backendFailure, "the backend sent an event after finishing the generation")
                        }
                        if case .finished = event { finished = true }
                        if try await handle(event) == .stop { break loop }
                    case .failed(let error):
                        throw error
                    case .ended:
                        guard finished else {
                            throw RouterError(.backendFailure, "the backend ended the stream without finishing the generation")
                        }
                        break loop
                    case .timedOut:
                        throw RouterError(.timeout, "the request did not finish within the server's request timeout")
                    }
                }
                // After `.finished` the loop waits for the stream's end, so a completed generation is never
                // cancelled. The loop also ends when the handler's task is cancelled (the stream of items then ends).
                try Task.checkCancellation()
                group.cancelAll()
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}
