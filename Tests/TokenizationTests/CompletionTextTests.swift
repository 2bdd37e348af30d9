import Testing
import Tokenization

/// The text a completion's tokens make: what the router and the CLI render.
@Suite("Completion text")
struct CompletionTextTests {
    /// Feeds `text`'s tokens and returns everything emitted (finishing at the end) and the matcher's state.
    func feed(_ text: String, stop: [String] = []) throws -> (CompletionText, String) {
        let tokenizer = try DefaultModelFixture.tokenizer()
        var completion = CompletionText(tokenizer: tokenizer, stopStrings: stop)
        var emitted = ""
        for token in tokenizer.encode(text, addSpecial: false) where !completion.stopped {
            emitted += completion.append(token)
        }
        emitted += completion.finish()
        return (completion, emitted)
    }

    @Test("all tokens of a plain text come out as that text, multi-byte characters included")
    func plainText() throws {
        let (completion, emitted) = try feed("Hello, wörld! 🎉")
        #expect(emitted == "Hello, wörld! 🎉")
        #expect(!completion.stopped)
    }

    @Test("a stop string spanning tokens is never emitted and ends the text")
    func stopString() throws {
        let (completion, emitted) = try feed("The answer is 42. Done here.", stop: ["Done"])
        #expect(emitted == "The answer is 42. ")
        #expect(completion.stopped)
        #expect(completion.matchedStopString == "Done")
    }

    @Test("text held back as a possible stop-string prefix comes out at the end when it was not one")
    func heldBackReleased() throws {
        let (completion, emitted) = try feed("It ends with END", stop: ["END!"])
        #expect(emitted == "It ends with END")
        #expect(!completion.stopped)
    }

    @Test("a stop string completed by the last text still stops, and nothing is emitted after a stop")
    func stopAtFinish() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        var completion = CompletionText(tokenizer: tokenizer, stopStrings: ["\n\n"])
        var emitted = ""
        for token in tokenizer.encode("hello\n\nworld", addSpecial: false) { emitted += completion.append(token) }
        emitted += completion.finish()
        #expect(emitted == "hello")
        #expect(completion.stopped)
        #expect(completion.append(tokenizer.encode("more", addSpecial: false)[0]).isEmpty)
    }

    @Test("replaying generated ids gives the state their feeding reached")
    func replaying() throws {
        let tokenizer = try DefaultModelFixture.tokenizer()
        let ids = tokenizer.encode("The answer is 42. Done here.", addSpecial: false)
        for k in 0...ids.count {
            var fed = CompletionText(tokenizer: tokenizer, stopStrings: ["Done"])
            var replayed = CompletionText(tokenizer: tokenizer, stopStrings: ["Done"], replaying: Array(ids.prefix(k)))
            for id in ids.prefix(k) where !fed.stopped { _ = fed.append(id) }
            var restFed = "", restReplayed = ""
            for id in ids.dropFirst(k) {
                restFed += fed.append(id)
                restReplayed += replayed.append(id)
            }
            restFed += fed.finish()
            restReplayed += replayed.finish()
            #expect(restFed == restReplayed, "after \(k) tokens")
            #expect(fed.stopped == replayed.stopped)
        }
    }
}
