import Testing

@testable import Router

@Suite("Stop matcher")
struct StopMatcherTests {
    @Test("text that might start a stop string is held back until it can no longer match")
    func holdsBackPrefixes() {
        var matcher = StopMatcher(stops: ["END!"])
        #expect(matcher.feed("abc E") == "abc ")
        #expect(matcher.feed("N") == "")
        #expect(matcher.feed("x") == "ENx")
        #expect(!matcher.matched)
        #expect(matcher.feed("EN") == "")
        #expect(matcher.flush() == "EN")
    }

    @Test("a stop string split across pieces matches and drops everything from it on")
    func matchesAcrossPieces() {
        var matcher = StopMatcher(stops: ["zz", "\n\n"])
        #expect(matcher.feed("hello\n") == "hello")
        #expect(matcher.feed("\nworld") == "")
        #expect(matcher.matched)
        #expect(matcher.flush() == "")
    }

    @Test("the earliest of several stop strings wins")
    func earliestWins() {
        var matcher = StopMatcher(stops: ["cd", "b"])
        #expect(matcher.feed("abcd") == "a")
        #expect(matcher.matched)
    }

    @Test("without stop strings everything passes straight through")
    func noStops() {
        var matcher = StopMatcher(stops: [])
        #expect(matcher.feed("anything") == "anything")
        #expect(matcher.flush() == "")
    }
}
