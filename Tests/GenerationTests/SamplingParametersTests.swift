import Foundation
import Generation
import Testing

@Suite("Sampling parameters")
struct SamplingParametersTests {
    static func message(_ parameters: SamplingParameters, vocabularySize: Int? = nil) -> String? {
        do {
            _ = try parameters.validated(vocabularySize: vocabularySize)
            return nil
        } catch {
            #expect(error.code == .invalidArgument)
            return error.message
        }
    }

    @Test("defaults and the documented extremes are valid")
    func validValues() throws {
        #expect(try SamplingParameters().validated() == SamplingParameters())
        let extreme = SamplingParameters(
            temperature: 2, topK: 100, topP: 1, minP: 1, repetitionPenalty: 0.5, frequencyPenalty: -2,
            presencePenalty: 2, penaltyLastN: -1, logitBias: [0: -100, 5: 100], seed: 0, logprobs: 20)
        #expect(try extreme.validated(vocabularySize: 6) == extreme)
        #expect(try SamplingParameters.greedy.validated().temperature == 0)
        #expect(SamplingParameters.greedy.seed != nil, "greedy parameters are a complete state too")
    }

    @Test("each out-of-range parameter is named with its range and value")
    func invalidValues() {
        let cases: [(SamplingParameters, String)] = [
            (SamplingParameters(temperature: 2.5), "temperature must be in 0...2, got 2.5"),
            (SamplingParameters(temperature: -0.1), "temperature must be in 0...2, got -0.1"),
            (SamplingParameters(temperature: .nan), "temperature must be in 0...2, got nan"),
            (SamplingParameters(topK: -1), "top_k must be >= 0, got -1"),
            (SamplingParameters(topP: 0), "top_p must be in (0, 1], got 0.0"),
            (SamplingParameters(topP: 1.5), "top_p must be in (0, 1], got 1.5"),
            (SamplingParameters(minP: -0.5), "min_p must be in 0...1, got -0.5"),
            (SamplingParameters(repetitionPenalty: 0), "repetition_penalty must be > 0, got 0.0"),
            (SamplingParameters(frequencyPenalty: 2.5), "frequency_penalty must be in -2...2, got 2.5"),
            (SamplingParameters(presencePenalty: -3), "presence_penalty must be in -2...2, got -3.0"),
            (SamplingParameters(penaltyLastN: -2), "penalty_last_n must be >= -1 (-1 = all tokens, 0 = off), got -2"),
            (SamplingParameters(logitBias: [7: 101]), "logit_bias must be in -100...100 (token 7), got 101.0"),
            (SamplingParameters(logitBias: [-1: 1]), "logit_bias must be a token id >= 0, got -1"),
            (SamplingParameters(logprobs: 21), "top_logprobs must be in 0...20, got 21"),
        ]
        for (parameters, expected) in cases {
            #expect(Self.message(parameters) == expected)
        }
        #expect(Self.message(SamplingParameters(logitBias: [9: 1]), vocabularySize: 9)
            == "logit_bias must be a token id in 0..<9, got 9")
    }
}
