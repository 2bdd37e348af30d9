import Tokenization

/// The bookkeeping of one completion as its tokens are sampled: end-of-generation and stop tokens, stop strings
/// matched on the detokenized stream (never emitted), and the length limit.
///
/// A value type fed one sampled token at a time by whoever owns the decode loop; it decides, the owner acts:
/// ```
/// var progress = CompletionProgress(tokenizer: t, parameters: p, maxTokens: n)
/// while !progress.isFinished { emit(progress.accept(sample())); if !progress.isFinished { step() } }
/// emit(progress.finish())
/// ```
public struct CompletionProgress: Sendable {
    /// Tokens that became part of the completion (end-of-generation and stop tokens excluded).
    public private(set) var tokens: [Int32] = []
    /// The text emitted so far.
    public private(set) var text = ""
    /// Set once the completion is over; `.length` when `maxTokens` is reached.
    public private(set) var finishReason: FinishReason?

    private let tokenizer: Tokenizer
    private let stopTokenIDs: Set<Int32>
    private let maxTokens: Int
    private var detokenizer: StreamingDetokenizer
    private var stopMatcher: StopStringMatcher

    public init(tokenizer: Tokenizer, parameters: SamplingParameters, maxTokens: Int) {
        self.tokenizer = tokenizer
        stopTokenIDs = parameters.stopTokenIDs
        self.maxTokens = maxTokens
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        stopMatcher = StopStringMatcher(stopStrings: parameters.stopStrings)
        if maxTokens <= 0 { finishReason = .length }
    }

    public var isFinished: Bool { finishReason != nil }

    /// Takes the next sampled token; returns the text that became final with it (often empty, never part of a
    /// stop string). Check `isFinished` afterwards: if set, do not decode this token.
    public mutating func accept(_ token: Int32) -> String {
        precondition(finishReason == nil, "CompletionProgress.accept after the completion finished")
        if tokenizer.isEndOfGeneration(token) {
            finishReason = .endOfGeneration
            return ""
        }
        if stopTokenIDs.contains(token) {
            finishReason = .stopToken(token)
            return ""
        }
        tokens.append(token)
        let (piece, stopped) = stopMatcher.append(detokenizer.append(token))
        text += piece
        if stopped {
            finishReason = .stopString(stopMatcher.matchedStopString ?? "")
        } else if tokens.count >= maxTokens {
            finishReason = .length
        }
        return piece
    }

    /// Ends the completion (the caller may stop early, e.g. at the end of the context: `.length`) and returns the
    /// text still held back — incomplete UTF-8 or a possible stop-string prefix that no longer can be one.
    public mutating func finish() -> String {
        if finishReason == nil { finishReason = .length }
        guard !stopMatcher.stopped else { return "" }
        var (piece, stopped) = stopMatcher.append(detokenizer.flush())
        if stopped {
            finishReason = .stopString(stopMatcher.matchedStopString ?? "")
        } else {
            piece += stopMatcher.flush()
        }
        text += piece
        return piece
    }
}
