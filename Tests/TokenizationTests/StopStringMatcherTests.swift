import Foundation
import Testing
@testable import Tokenization

@Suite("Stop string matcher")
struct StopStringMatcherTests {
    /// Feeds `pieces` and returns everything emitted (flushing at the end unless stopped) and whether it stopped.
    static func run(_ stops: [String], _ pieces: [String]) -> (text: String, stopped: Bool, steps: [String]) {
        var matcher = StopStringMatcher(stopStrings: stops)
        var text = ""
        var steps: [String] = []
        for piece in pieces {
            let (emit, stopped) = matcher.append(piece)
            text += emit
            steps.append(emit)
            if stopped { return (text, true, steps) }
        }
        text += matcher.flush()
        return (text, false, steps)
    }

    @Test("a stop string split across pieces is found and never emitted")
    func splitStop() {
        let result = Self.run(["</answer>"], ["The answer is 4.</an", "sw", "er> trailing"])
        #expect(result.text == "The answer is 4.")
        #expect(result.stopped)
        #expect(result.steps == ["The answer is 4.", "", ""])
    }

    @Test("a held-back prefix is released when it turns out not to be a stop string")
    func heldBackPrefix() {
        var matcher = StopStringMatcher(stopStrings: ["STOP"])
        #expect(matcher.append("go ST") == ("go ", false))
        #expect(matcher.append("O") == ("", false))
        #expect(matcher.append("RM") == ("STORM", false))
        #expect(matcher.append("ST") == ("", false))
        #expect(matcher.flush() == "ST")
        #expect(matcher.matchedStopString == nil)
    }

    @Test("after a stop everything is dropped, and the earliest of several stop strings wins")
    func earliestStop() {
        var matcher = StopStringMatcher(stopStrings: ["world", "lo w"])
        #expect(matcher.append("hello world") == ("hel", true))
        #expect(matcher.matchedStopString == "lo w")
        #expect(matcher.append("more") == ("", true))
        #expect(matcher.flush() == "")
    }

    @Test("overlapping prefixes are handled")
    func overlappingPrefix() {
        let result = Self.run(["aab"], ["a", "a", "a", "b", "c"])
        #expect(result.text == "a")
        #expect(result.stopped)
        #expect(Self.run(["aab"], ["a", "a", "a", "c"]) == ("aaac", false, ["", "", "a", "aac"]) as (String, Bool, [String]))
    }

    @Test("no stop strings pass text straight through; non-ASCII text is matched by scalars")
    func passThroughAndUnicode() {
        #expect(Self.run([], ["a", "b"]).text == "ab")
        #expect(Self.run(["🛑"], ["héllo ", "wörld 🛑 gone"]).text == "héllo wörld ")
        #expect(Self.run(["é"], ["cafe\u{301}"]).text == "cafe\u{301}")
        #expect(Self.run(["\u{301}"], ["cafe\u{301} x"]).text == "cafe")
    }

    @Test("any split of a text emits exactly the text before the first stop")
    func randomSplits() {
        var rng = SplitMix64(state: 17)
        let alphabet = Array("abc<>/ ")
        let stops = ["<//>", "ab c", "cc<"]
        for _ in 0..<500 {
            let length = Int(rng.next() % 40)
            let text = String((0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            var pieces: [String] = []
            var rest = Substring(text)
            while !rest.isEmpty {
                let take = 1 + Int(rng.next() % 5)
                pieces.append(String(rest.prefix(take)))
                rest = rest.dropFirst(take)
            }
            let firstStop = stops.compactMap { text.range(of: $0)?.lowerBound }.min()
            let expected = firstStop.map { String(text[..<$0]) } ?? text
            let result = Self.run(stops, pieces)
            #expect(result.text == expected, "text \(text.debugDescription) pieces \(pieces)")
            #expect(result.stopped == (firstStop != nil))
        }
    }
}

/// A small seeded generator (splitmix64): the same splits on every run.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
