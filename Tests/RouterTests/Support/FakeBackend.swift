import Foundation
import Generation
import Router
import Synchronization
import Tokenization

/// An in-memory backend that "generates" a fixed reply, token by token, through the real tokenizer, so the text
/// the router produces is real. It records what it was asked and whether each stream was cancelled.
final class FakeBackend: GenerationBackend {
    struct Record: Sendable {
        var requests: [GenerationState] = []
        var cancelled: Set<String> = []
        var finished: Set<String> = []
        var tokensSent: [String: Int] = [:]
    }

    let tokenizer: Tokenizer
    let replyTokens: [Int32]
    /// Pause before each token; nil sends them as fast as the consumer takes them.
    let delay: Duration?
    /// Repeat the reply until cancelled or `maxTokens` is reached, instead of ending with end-of-generation.
    let endless: Bool
    let failure: GenerationError?
    let healthState: BackendHealth
    /// Reported in every summary, as a cluster reports the KV hand-off.
    let handoff: KVHandoffSummary?
    /// Reported in every summary, as a cluster names the workers that served a generation.
    let workers: ServingWorkers?
    let record = Mutex(Record())

    init(
        tokenizer: Tokenizer, reply: String = FakeBackend.defaultReply, delay: Duration? = nil, endless: Bool = false,
        failure: GenerationError? = nil, health: BackendHealth = .ready, handoff: KVHandoffSummary? = nil,
        workers: ServingWorkers? = nil
    ) {
        self.handoff = handoff
        self.workers = workers
        self.tokenizer = tokenizer
        self.replyTokens = tokenizer.encode(reply, addSpecial: false)
        self.delay = delay
        self.endless = endless
        self.failure = failure
        self.healthState = health
    }

    static let defaultReply = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓"

    /// The requests it was asked to start (the states' requests).
    var requests: [GenerationRequest] { record.withLock { $0.requests.map(\.request) } }
    func wasCancelled(_ id: String) -> Bool { record.withLock { $0.cancelled.contains(id) } }
    func tokensSent(_ id: String) -> Int { record.withLock { $0.tokensSent[id] ?? 0 } }

    /// The deterministic logprob of the `index`-th generated token and its alternatives.
    static func logprob(index: Int) -> Float { -0.25 * Float(index + 1) }

    func health() async -> BackendHealth { healthState }

    func generate(_ state: GenerationState) async throws(GenerationError) -> GenerationStream {
        if let failure { throw failure }
        let request = state.request
        record.withLock { $0.requests.append(state) }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let producer = Task { [self] in
            var sent = 0
            let alternatives = request.sampling.logprobs
            func token(_ id: Int32) -> GeneratedToken {
                guard let alternatives else { return GeneratedToken(id: id) }
                let top = (0..<alternatives).map { TokenLogprob(id: (id + Int32($0)) % 1000, logprob: Self.logprob(index: sent) - Float($0)) }
                return GeneratedToken(id: id, logprob: Self.logprob(index: sent), topLogprobs: top)
            }
            var index = 0
            while sent < request.maxNewTokens {
                if !self.endless && index == self.replyTokens.count { break }
                if let delay = self.delay {
                    do { try await Task.sleep(for: delay) } catch { return }
                }
                if Task.isCancelled { return }
                continuation.yield(.token(token(self.replyTokens[index % self.replyTokens.count])))
                sent += 1
                index += 1
                self.record.withLock { $0.tokensSent[request.id] = sent }
            }
            // End of generation: counted, never emitted (as a scheduler does).
            var reason = FinishReason.maxTokens
            if sent < request.maxNewTokens {
                sent += 1
                reason = .endOfGeneration
            }
            continuation.yield(.finished(GenerationSummary(
                reason: reason, promptTokens: request.prompt.count, completionTokens: sent, handoff: self.handoff,
                workers: self.workers)))
            continuation.finish()
            self.record.withLock { _ = $0.finished.insert(request.id) }
        }
        return GenerationStream(stream) { [self] _ in
            producer.cancel()
            continuation.finish(throwing: GenerationError(.cancelled, "cancelled"))
            self.record.withLock { _ = $0.cancelled.insert(request.id) }
        }
    }
}
