/// Finds stop strings in streamed text without ever emitting text that might turn out to be the start of one.
///
/// Feed text as it is detokenized; emit what ``feed(_:)`` returns. Text that could still grow into a stop string
/// is held back until it either matches (it is then dropped, with everything after it) or cannot match
/// (it is then emitted). Matching is per `Character`.
struct StopMatcher: Sendable, Equatable {
    let stops: [String]
    private(set) var held = ""
    private(set) var matched = false

    init(stops: [String]) {
        self.stops = stops
    }

    /// Returns the text that is safe to emit; after a match, returns only the text before the stop string and
    /// sets ``matched``. Call no more after a match.
    mutating func feed(_ text: String) -> String {
        precondition(!matched, "StopMatcher fed after a stop string matched")
        guard !stops.isEmpty else { return text }
        held += text
        if let cut = earliestMatch() {
            matched = true
            let emitted = String(held[..<cut])
            held = ""
            return emitted
        }
        let keep = longestSuffixThatStartsAStop()
        let emitted = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return emitted
    }

    /// Text held back when generation ends without a match.
    mutating func flush() -> String {
        defer { held = "" }
        return matched ? "" : held
    }

    private func earliestMatch() -> String.Index? {
        var best: String.Index?
        for stop in stops {
            if let range = held.firstRange(of: stop), best.map({ range.lowerBound < $0 }) ?? true {
                best = range.lowerBound
            }
        }
        return best
    }

    private func longestSuffixThatStartsAStop() -> Int {
        let longest = stops.map(\.count).max() ?? 0
        var length = min(longest - 1, held.count)
        while length > 0 {
            let suffix = held.suffix(length)
            if stops.contains(where: { $0.hasPrefix(suffix) }) { return length }
            length -= 1
        }
        return 0
    }
}
