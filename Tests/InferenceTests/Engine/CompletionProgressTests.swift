import GGUF
import Testing
import Tokenization

@testable import Inference

@Suite("Completion progress")
struct CompletionProgressTests {
    static let tokenizer: Result<Tokenizer, InferenceError> = {
        do { return .success(try Tokenizer(gguf: GGUFFile(path: try DefaultModel.resolve(nil)))) } catch {
            return .failure(InferenceError(.invalidModel, "\(error)"))
        }
    }()

    func feed(_ text: String, _ parameters: SamplingParameters = .greedy, maxTokens: Int = 100) throws -> (CompletionProgress, String) {
        let tokenizer = try Self.tokenizer.get()
        var progress = CompletionProgress(tokenizer: tokenizer, parameters: parameters, maxTokens: maxTokens)
        var emitted = ""
        for token in tokenizer.encode(text, addSpecial: false) where !progress.isFinished {
            emitted += progress.accept(token)
        }
        emitted += progress.finish()
        return (progress, emitted)
    }

    @Test("all tokens of a plain text come out as that text, finishing by length")
    func plainText() throws {
        let (progress, emitted) = try feed("Hello, wörld! 🎉")
        #expect(emitted == "Hello, wörld! 🎉")
        #expect(progress.text == emitted)
        #expect(progress.finishReason == .length)
    }

    @Test("max tokens ends the completion on the last allowed token")
    func maxTokens() throws {
        let (progress, _) = try feed("one two three four five six", maxTokens: 3)
        #expect(progress.tokens.count == 3)
        #expect(progress.finishReason == .length)
        let (zero, emitted) = try feed("one", maxTokens: 0)
        #expect(zero.isFinished && emitted.isEmpty && zero.tokens.isEmpty)
    }

    @Test("a stop string spanning tokens is never emitted and ends the completion")
    func stopString() throws {
        let (progress, emitted) = try feed("The answer is 42. Done here.", SamplingParameters(temperature: 0, stopStrings: ["Done"]))
        #expect(emitted == "The answer is 42. ")
        #expect(progress.finishReason == .stopString("Done"))
    }

    @Test("an end-of-generation token or a stop token ends the completion without text")
    func endTokens() throws {
        let tokenizer = try Self.tokenizer.get()
        var progress = CompletionProgress(tokenizer: tokenizer, parameters: .greedy, maxTokens: 10)
        let hello = tokenizer.encode("Hi", addSpecial: false)
        for token in hello { _ = progress.accept(token) }
        _ = progress.accept(tokenizer.eosID!)
        #expect(progress.finishReason == .endOfGeneration)
        #expect(progress.tokens == hello)

        var stopped = CompletionProgress(
            tokenizer: tokenizer, parameters: SamplingParameters(temperature: 0, stopTokenIDs: [hello[0]]), maxTokens: 10)
        #expect(stopped.accept(hello[0]).isEmpty)
        #expect(stopped.finishReason == .stopToken(hello[0]))
    }
}
