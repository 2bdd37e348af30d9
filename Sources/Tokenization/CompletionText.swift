/// The text of a completion as its tokens arrive: detokenized (incomplete UTF-8 held back) and cut at the first
/// stop string (matched on Unicode scalars, across token boundaries, never emitted). What the router and the CLI
/// render; the workers deal in token ids only.
///
/// A value type with no I/O. Its state is a function of the tokens fed so far, so a generation continued on
/// another worker needs nothing of it beyond its generated ids (`init(tokenizer:stopStrings:replaying:)`).
public struct CompletionText: Sendable {
    private var detokenizer: StreamingDetokenizer
    private var matcher: StopStringMatcher

    /// Empty stop strings are ignored.
    public init(tokenizer: Tokenizer, stopStrings: [String]) {
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        matcher = StopStringMatcher(stopStrings: stopStrings)
    }

    /// The state after `generated` was fed (the text they produced is dropped).
    public init(tokenizer: Tokenizer, stopStrings: [String], replaying generated: [Int32]) {
        self.init(tokenizer: tokenizer, stopStrings: stopStrings)
        for token in generated where !stopped { _ = append(token) }
    }

    /// Whether a stop string has been found: the completion's text is over.
    public var stopped: Bool { matcher.stopped }
    /// The stop string that ended the text, once one has.
    public var matchedStopString: String? { matcher.matchedStopString }

    /// Takes the next generated token; returns the text that became final with it (often empty, never part of a
    /// stop string). Check `stopped` afterwards. Nothing is returned once stopped.
    public mutating func append(_ token: Int32) -> String {
        guard !stopped else { return "" }
        return matcher.append(detokenizer.append(token)).emit
    }

    /// Ends the text: returns what was held back (incomplete UTF-8, a possible stop-string prefix that can no
    /// longer become one). `stopped` tells whether that last text completed a stop string.
    public mutating func finish() -> String {
        guard !stopped else { return "" }
        let (piece, stopped) = matcher.append(detokenizer.flush())
        return stopped ? piece : piece + matcher.flush()
    }
}
