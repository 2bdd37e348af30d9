import Generation
import Tokenization

/// A token's text and bytes with its log-probability, ready to render in either logprobs shape.
struct RenderedLogprob: Sendable, Equatable {
    struct Alternative: Sendable, Equatable {
        var token: String
        var bytes: [UInt8]
        var logprob: Float
    }

    var token: String
    var bytes: [UInt8]
    var logprob: Float
    var top: [Alternative]
}

/// Turns a backend's token events into what a client sees: the text (`CompletionText`: detokenized, cut at a
/// stop string), rendered logprobs, the token count. A value type with no I/O; the handlers write what it returns.
struct GenerationTranscript: Sendable {
    /// What one token adds.
    struct Step: Sendable, Equatable {
        var text: String
        var logprob: RenderedLogprob?
        /// A stop string matched: the router stops consuming and finishes with reason `stop`.
        var stopped: Bool
    }

    private let tokenizer: Tokenizer
    private let wantsLogprobs: Bool
    private var text: CompletionText
    /// Tokens received.
    private(set) var tokenCount = 0

    init(tokenizer: Tokenizer, stop: [String], logprobs: Bool) {
        self.tokenizer = tokenizer
        self.wantsLogprobs = logprobs
        self.text = CompletionText(tokenizer: tokenizer, stopStrings: stop)
    }

    var stoppedByString: Bool { text.stopped }

    /// Accepts one generated token.
    mutating func accept(_ token: GeneratedToken) -> Step {
        tokenCount += 1
        let piece = text.append(token.id)
        var logprob: RenderedLogprob?
        if wantsLogprobs, let value = token.logprob {
            let bytes = tokenizer.piece(token.id)
            logprob = RenderedLogprob(
                token: String(decoding: bytes, as: UTF8.self), bytes: bytes, logprob: Self.encodable(value),
                top: token.topLogprobs.map { alternative in
                    let bytes = tokenizer.piece(alternative.id)
                    return .init(
                        token: String(decoding: bytes, as: UTF8.self), bytes: bytes,
                        logprob: Self.encodable(alternative.logprob))
                })
        }
        return Step(text: piece, logprob: logprob, stopped: text.stopped)
    }

    /// JSON has no infinities: an impossible token is reported as -9999, as OpenAI does.
    static func encodable(_ logprob: Float) -> Float {
        logprob.isFinite ? logprob : -9999
    }

    /// The text still held back when generation ends; `stopped` is set when that last text completes a stop string.
    mutating func finish() -> Step {
        if text.stopped { return Step(text: "", logprob: nil, stopped: true) }
        let piece = text.finish()
        return Step(text: piece, logprob: nil, stopped: text.stopped)
    }
}
