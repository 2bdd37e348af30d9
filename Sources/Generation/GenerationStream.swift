import Synchronization

/// The events of one generation (`GenerationEvent`s: tokens, then one `finished`), for one consumer.
///
/// It is the only hop a token makes between the producer and the consumer: a backend builds it over whatever
/// already carries its events (the scheduler's per-request stream, a worker connection's messages), and the
/// consumer's `next()` decodes each event on its own task.
///
/// **Ending early.** `cancel(reason:)` stops the generation wherever it runs and frees its KV; the iteration then
/// ends with an error. Dropping the stream (and any iterator over it) before it finished cancels it too, so a
/// consumer that leaves a loop early never leaks a generation. Once `finished` was read, nothing is cancelled.
public struct GenerationStream: AsyncSequence, Sendable {
    public typealias Element = GenerationEvent

    private let source: Source

    /// A stream whose events come from `next` (called by one consumer at a time, nil at the end) and which
    /// `cancel` stops (called at most once, from any task, possibly while `next` waits).
    public init(
        next: @escaping @Sendable () async throws -> GenerationEvent?, cancel: @escaping @Sendable (String) -> Void
    ) {
        source = Source(next: next, cancel: cancel)
    }

    /// A stream over `events`, stopped by `cancel`.
    public init(_ events: AsyncThrowingStream<GenerationEvent, any Error>, cancel: @escaping @Sendable (String) -> Void) {
        let box = IteratorBox(events.makeAsyncIterator())
        self.init(next: { try await box.next() }, cancel: cancel)
    }

    /// Stops the generation (idempotent; a no-op once it finished).
    public func cancel(reason: String) {
        source.cancel(reason: reason)
    }

    public func makeAsyncIterator() -> Iterator { Iterator(source: source) }

    public struct Iterator: AsyncIteratorProtocol {
        let source: Source

        public mutating func next() async throws -> GenerationEvent? {
            try await source.next()
        }
    }

    final class Source: Sendable {
        private let nextEvent: @Sendable () async throws -> GenerationEvent?
        private let cancelBody: @Sendable (String) -> Void
        /// Set once the generation finished, failed or was cancelled: nothing is left to cancel.
        private let ended = Atomic<Bool>(false)

        init(next: @escaping @Sendable () async throws -> GenerationEvent?, cancel: @escaping @Sendable (String) -> Void) {
            nextEvent = next
            cancelBody = cancel
        }

        deinit {
            if !ended.load(ordering: .acquiring) { cancelBody("the consumer went away") }
        }

        func cancel(reason: String) {
            if !ended.exchange(true, ordering: .acquiringAndReleasing) { cancelBody(reason) }
        }

        func next() async throws -> GenerationEvent? {
            do {
                // Only `finished` ends the generation: a stream that stops short (the consuming task was cancelled)
                // still has a generation to cancel.
                let event = try await nextEvent()
                if case .finished? = event { ended.store(true, ordering: .releasing) }
                return event
            } catch {
                ended.store(true, ordering: .releasing)
                throw error
            }
        }
    }

    /// Holds an `AsyncThrowingStream`'s iterator for the one consumer.
    private final class IteratorBox: @unchecked Sendable {
        private var iterator: AsyncThrowingStream<GenerationEvent, any Error>.Iterator

        init(_ iterator: AsyncThrowingStream<GenerationEvent, any Error>.Iterator) {
            self.iterator = iterator
        }

        func next() async throws -> GenerationEvent? {
            try await iterator.next()
        }
    }
}
