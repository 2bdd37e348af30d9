/// Finds stop strings in a stream of text pieces (the detokenized output), matching across piece boundaries.
///
/// Never emits any part of a stop string: text that could be the start of one is held back until later text
/// resolves it. Once a stop string is found, the text before it is emitted, `stopped` becomes true and every
/// later piece is dropped. At the end of generation without a stop, `flush()` returns the held-back text.
/// Matching is on Unicode scalars, so a stop string may end inside what would be one grapheme cluster.
public struct StopStringMatcher: Sendable {
    private let stops: [[Unicode.Scalar]]
    private var pending: [Unicode.Scalar] = []
    /// The stop string that ended the stream, once one has.
    public private(set) var matchedStopString: String?

    /// Empty strings are ignored.
    public init(stopStrings: [String]) {
        stops = stopStrings.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Whether a stop string has been found.
    public var stopped: Bool { matchedStopString != nil }

    /// Feeds the next piece of text. Returns the text that is now safe to emit and whether a stop string was
    /// found (in which case `emit` is the text before it and generation should end).
    public mutating func append(_ text: String) -> (emit: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard !stops.isEmpty else { return (text, false) }
        pending.append(contentsOf: text.unicodeScalars)

        // The earliest match wins; among matches starting at the same place, the first listed.
        var earliest: (start: Int, stop: Int)?
        for (index, stop) in stops.enumerated() {
            if let start = firstOccurrence(of: stop, in: pending), start < (earliest?.start ?? .max) {
                earliest = (start, index)
            }
        }
        if let earliest {
            let emit = Self.string(pending[..<earliest.start])
            matchedStopString = Self.string(stops[earliest.stop][...])
            pending.removeAll()
            return (emit, true)
        }

        // Hold back the longest suffix that is a proper prefix of some stop string.
        var held = 0
        for stop in stops {
            var length = min(stop.count - 1, pending.count)
            while length > held {
                if pending[(pending.count - length)...].elementsEqual(stop[..<length]) { break }
                length -= 1
            }
            held = max(held, length)
        }
        let emit = Self.string(pending[..<(pending.count - held)])
        pending.removeFirst(pending.count - held)
        return (emit, false)
    }

    /// Ends the stream: returns the held-back text (nothing after a stop).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return stopped ? "" : Self.string(pending[...])
    }

    private func firstOccurrence(of stop: [Unicode.Scalar], in text: [Unicode.Scalar]) -> Int? {
        guard stop.count <= text.count else { return nil }
        for start in 0...(text.count - stop.count) where text[start] == stop[0] {
            if text[start..<(start + stop.count)].elementsEqual(stop) { return start }
        }
        return nil
    }

    private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
