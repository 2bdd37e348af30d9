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

/// Turns a backend's token events into the text a client sees: detokenizes (holding back incomplete UTF-8),
/// enforces stop strings, renders logprobs and counts tokens. A value type with no I/O; the handlers write
/// what it returns.
struct GenerationTranscript: Sendable {
    /// What one token adds.
    struct Step: Sendable, Equatable {
        var text: String
        var logprob: RenderedLogprob?
        /// A stop string matched: the router must stop consuming and finish with reason `stop`.
        var stopped: Bool
    }

    private let tokenizer: Tokenizer
    private let wantsLogprobs: Bool
    private var detokenizer: StreamingDetokenizer
    private var stopMatcher: StopMatcher
    /// Tokens received, end-of-generation tokens included.
    private(set) var tokenCount = 0
    private(set) var stoppedByString = false

    init(tokenizer: Tokenizer, stop: [String], logprobs: Bool) {
        self.tokenizer = tokenizer
        self.wantsLogprobs = logprobs
        self.detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        self.stopMatcher = StopMatcher(stops: stop)
    }

    /// Accepts one generated token. End-of-generation tokens are counted but add neither text nor logprobs.
    mutating func accept(_ token: GeneratedToken) -> Step {
        tokenCount += 1
        guard !tokenizer.isEndOfGeneration(token.id) else { return Step(text: "", logprob: nil, stopped: false) }
        let text = stopMatcher.feed(detokenizer.append(token.id))
        stoppedByString = stopMatcher.matched
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
        return Step(text: text, logprob: logprob, stopped: stoppedByString)
    }

    /// JSON has no infinities: an impossible token is reported as -9999, as OpenAI does.
    static func encodable(_ logprob: Float) -> Float {
        logprob.isFinite ? logprob : -9999
    }

    /// The text still held back (incomplete UTF-8, a possible stop-string prefix) when generation ends.
    /// `stopped` is set when that last text completes a stop string.
    mutating func finish() -> Step {
        guard !stoppedByString else { return Step(text: "", logprob: nil, stopped: true) }
        let text = stopMatcher.feedFinal(detokenizer.flush())
        stoppedByString = stopMatcher.matched
        return Step(text: text, logprob: nil, stopped: stoppedByString)
    }
}

extension StopMatcher {
    /// Feeds the last text and releases anything held back that did not become a stop string.
    fileprivate mutating func feedFinal(_ text: String) -> String {
        let emitted = feed(text)
        return matched ? emitted : emitted + flush()
    }
}
