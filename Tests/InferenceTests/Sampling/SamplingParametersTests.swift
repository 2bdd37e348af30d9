import Foundation
import Testing
@testable import Inference

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
            presencePenalty: 2, penaltyLastN: -1, logitBias: [0: -100, 5: 100], seed: 0, maxTokens: 1,
            stopTokenIDs: [2], stopStrings: ["\n\n"], logprobs: 20)
        #expect(try extreme.validated(vocabularySize: 6) == extreme)
        #expect(try SamplingParameters.greedy.validated().temperature == 0)
    }

    @Test("each out-of-range parameter is named with its range and value")
    func invalidValues() {
        let cases: [(SamplingParameters, String)] = [
            (SamplingParameters(temperature: 2.5), "sampling parameter temperature must be in 0...2, got 2.5"),
            (SamplingParameters(temperature: -0.1), "sampling parameter temperature must be in 0...2, got -0.1"),
            (SamplingParameters(temperature: .nan), "sampling parameter temperature must be in 0...2, got nan"),
            (SamplingParameters(topK: -1), "sampling parameter top_k must be >= 0, got -1"),
            (SamplingParameters(topP: 0), "sampling parameter top_p must be in (0, 1], got 0.0"),
            (SamplingParameters(topP: 1.5), "sampling parameter top_p must be in (0, 1], got 1.5"),
            (SamplingParameters(minP: -0.5), "sampling parameter min_p must be in 0...1, got -0.5"),
            (SamplingParameters(repetitionPenalty: 0), "sampling parameter repetition_penalty must be > 0, got 0.0"),
            (SamplingParameters(frequencyPenalty: 2.5), "sampling parameter frequency_penalty must be in -2...2, got 2.5"),
            (SamplingParameters(presencePenalty: -3), "sampling parameter presence_penalty must be in -2...2, got -3.0"),
            (SamplingParameters(penaltyLastN: -2), "sampling parameter penalty_last_n must be >= -1 (-1 = all tokens, 0 = off), got -2"),
            (SamplingParameters(logitBias: [7: 101]), "sampling parameter logit_bias[7] must be in -100...100, got 101.0"),
            (SamplingParameters(logitBias: [-1: 1]), "sampling parameter logit_bias must be a token id >= 0, got -1"),
            (SamplingParameters(maxTokens: 0), "sampling parameter max_tokens must be >= 1, got 0"),
            (SamplingParameters(stopStrings: ["a", ""]), "stop string 1 is empty; stop strings must be non-empty"),
            (SamplingParameters(logprobs: 21), "sampling parameter logprobs must be in 0...20, got 21"),
        ]
        for (parameters, expected) in cases {
            #expect(Self.message(parameters) == expected)
        }
        #expect(Self.message(SamplingParameters(logitBias: [9: 1]), vocabularySize: 9)
            == "sampling parameter logit_bias must be a token id in 0..<9, got 9")
        #expect(Self.message(SamplingParameters(stopTokenIDs: [3, 12]), vocabularySize: 10)
            == "sampling parameter stop token id must be a token id in 0..<10, got 12")
    }

    @Test("parameters survive a JSON round trip")
    func codable() throws {
        let parameters = SamplingParameters(temperature: 0.7, topK: 40, logitBias: [3: -5], seed: 11, stopStrings: ["END"], logprobs: 3)
        let data = try JSONEncoder().encode(parameters)
        #expect(try JSONDecoder().decode(SamplingParameters.self, from: data) == parameters)
    }
}
