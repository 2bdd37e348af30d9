import ChatTemplates
import Foundation
import Generation
import Hummingbird
import Logging
import Tokenization

/// The endpoints' shared state: immutable after construction, so handlers run concurrently without locks.
struct OpenAIService: Sendable {
    let configuration: RouterConfiguration
    let tokenizer: Tokenizer
    /// Nil when the model has no chat template and none was given: chat completions then answer 400.
    let template: ChatTemplate?
    let backend: any GenerationBackend
    let metrics: RouterMetrics
    let logger: Logger
    /// Reported as `created` of the model object: when this router started.
    let startedAt: Int

    var bosText: String { tokenizer.bosID.map { tokenizer.tokenText($0) } ?? "" }
    var eosText: String { tokenizer.eosID.map { tokenizer.tokenText($0) } ?? "" }

    /// Tokenizes a prompt as llama-server does (special tokens parsed), without doubling a BOS the template
    /// already wrote.
    func tokenizePrompt(_ text: String) -> [Int32] {
        tokenizer.encodePrompt(text)
    }

    /// Starts a generation on the backend and updates the in-flight gauges; the returned tracker must be
    /// finished exactly once. The backend's refusals arrive as `RouterError`s.
    func start(_ state: GenerationState, promptParameter: String) async throws(RouterError) -> (GenerationStream, LatencyTracker) {
        let tracker = LatencyTracker(metrics: metrics)
        do {
            let stream = try await backend.generate(state)
            return (stream, tracker)
        } catch {
            tracker.finish(promptTokens: nil, completionTokens: nil)
            throw RouterError(error, promptParameter: promptParameter)
        }
    }

    var deadline: ContinuousClock.Instant { .now + configuration.requestTimeout }

    static func makeID(prefix: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return prefix + String((0..<29).map { _ in alphabet.randomElement()! })
    }

    static var now: Int { Int(Date().timeIntervalSince1970) }
}

/// Times one generation request for the latency histograms and keeps the in-flight and waiting gauges right.
/// Used by one request's task only.
final class LatencyTracker: @unchecked Sendable {
    private let metrics: RouterMetrics
    private let started = ContinuousClock.now
    private var lastToken: ContinuousClock.Instant?
    private var finished = false

    init(metrics: RouterMetrics) {
        self.metrics = metrics
        metrics.inFlight.increment()
        metrics.waiting.increment()
    }

    /// Times a token, or records the KV hand-off a finished generation reports.
    func observe(_ event: GenerationEvent) {
        switch event {
        case .token: tokenArrived()
        case .finished(let summary):
            if let handoff = summary.handoff {
                metrics.recordKVTransfer(
                    transport: handoff.transport, bytes: handoff.bytes, duration: .nanoseconds(Int64(handoff.seconds * 1e9)),
                    notShipped: handoff.bytesNotShipped, worker: summary.workers?.decode)
            }
        }
    }

    func tokenArrived() {
        let now = ContinuousClock.now
        if let lastToken {
            metrics.interTokenLatency.record(now - lastToken)
        } else {
            metrics.timeToFirstToken.record(now - started)
            metrics.waiting.decrement()
        }
        lastToken = now
    }

    /// Idempotent; token counts are added when known.
    func finish(promptTokens: Int?, completionTokens: Int?) {
        guard !finished else { return }
        finished = true
        if lastToken == nil { metrics.waiting.decrement() }
        metrics.inFlight.decrement()
        metrics.requestDuration.record(ContinuousClock.now - started)
        if let promptTokens { metrics.promptTokens.increment(by: Int64(promptTokens)) }
        if let completionTokens { metrics.completionTokens.increment(by: Int64(completionTokens)) }
    }

    deinit {
        // A handler that was torn down mid-request (client gone, task cancelled) still releases its gauges.
        finish(promptTokens: nil, completionTokens: nil)
    }
}
