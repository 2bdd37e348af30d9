import Foundation
import Router
import Synchronization
import Tokenization

/// An in-memory backend that "generates" a fixed reply, token by token, through the real tokenizer, so the text
/// the router produces is real. It records what it was asked and whether each stream was cancelled.
final class FakeBackend: GenerationBackend {
    struct Record: Sendable {
        var requests: [GenerationRequest] = []
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
    let failure: RouterError?
    let healthState: BackendHealth
    let record = Mutex(Record())

    init(
        tokenizer: Tokenizer, reply: String = FakeBackend.defaultReply, delay: Duration? = nil, endless: Bool = false,
        failure: RouterError? = nil, health: BackendHealth = .ready
    ) {
        self.tokenizer = tokenizer
        self.replyTokens = tokenizer.encode(reply, addSpecial: false)
        self.delay = delay
        self.endless = endless
        self.failure = failure
        self.healthState = health
    }

    static let defaultReply = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓"

    var requests: [GenerationRequest] { record.withLock { $0.requests } }
    func wasCancelled(_ id: String) -> Bool { record.withLock { $0.cancelled.contains(id) } }
    func tokensSent(_ id: String) -> Int { record.withLock { $0.tokensSent[id] ?? 0 } }

    /// The deterministic logprob of the `index`-th generated token and its alternatives.
    static func logprob(index: Int) -> Float { -0.25 * Float(index + 1) }

    func health() async -> BackendHealth { healthState }

    func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        if let failure { throw failure }
        record.withLock { $0.requests.append(request) }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let producer = Task { [self] in
            var sent = 0
            func token(_ id: Int32) -> GeneratedToken {
                guard request.logprobs else { return GeneratedToken(id: id) }
                let top = (0..<request.topLogprobs).map { TokenLogprob(id: (id + Int32($0)) % 1000, logprob: Self.logprob(index: sent) - Float($0)) }
                return GeneratedToken(id: id, logprob: Self.logprob(index: sent), topLogprobs: top)
            }
            var index = 0
            while sent < request.maxTokens {
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
            var reason = GenerationFinishReason.maxTokens
            if sent < request.maxTokens, let eos = self.tokenizer.eosID {
                continuation.yield(.token(token(eos)))
                sent += 1
                reason = .endOfGeneration
            }
            continuation.yield(.finished(GenerationSummary(
                reason: reason, promptTokens: request.promptTokens.count, completionTokens: sent)))
            continuation.finish()
        }
        continuation.onTermination = { [self] termination in
            switch termination {
            case .cancelled:
                producer.cancel()
                self.record.withLock { _ = $0.cancelled.insert(request.id) }
            case .finished:
                self.record.withLock { _ = $0.finished.insert(request.id) }
            @unknown default:
                break
            }
        }
        return stream
    }
}
