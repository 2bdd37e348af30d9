import Foundation
import Inference
import KVTransport

/// Carries a sampler from the prefill worker, which drew the first token, to the decode worker, which draws
/// the rest, so that the tokens equal one process sampling them all.
///
/// The `Sampler`'s PRNG state is not exposed, so the state travels as what rebuilds it: the sampling parameters
/// (with the seed actually used), the tokens the penalty history saw before the first token (the prompt's tail,
/// as `Generator` feeds it), and the first token. `restore` replays the first draw on logits that make the first
/// token the only possible choice: one draw from the same seed, the same history — the same state.
public enum SamplingHandoff {
    /// A new sampler for `prompt` as `Generator` starts one: the prompt's tail in the penalty history.
    public static func sampler(
        parameters: SamplingParameters, prompt: [Int32], vocabularySize: Int
    ) -> Sampler {
        var sampler = Sampler(parameters: parameters, vocabularySize: vocabularySize)
        sampler.accept(contentsOf: (parameters.penaltyLastN < 0 ? prompt[...] : prompt.suffix(parameters.penaltyLastN)))
        return sampler
    }

    /// The state to send with the first token, for a sampler made by `sampler(parameters:prompt:vocabularySize:)`.
    public static func state(parameters: SamplingParameters, seed: UInt64, prompt: [Int32]) throws(WorkerError) -> KVSamplingState {
        var resolved = parameters
        resolved.seed = seed
        let encoded: Data
        do { encoded = try JSONEncoder().encode(resolved) } catch {
            throw WorkerError(.invalidArgument, "sampling parameters cannot be encoded", cause: error)
        }
        return KVSamplingState(
            rngState: [seed], recentTokens: Array((parameters.penaltyLastN < 0 ? prompt[...] : prompt.suffix(parameters.penaltyLastN))),
            parameters: Array(encoded))
    }

    /// The sampler as it was right after drawing `firstToken`, and the parameters it uses.
    public static func restore(
        _ state: KVSamplingState, firstToken: Int32, vocabularySize: Int
    ) throws(WorkerError) -> (Sampler, SamplingParameters) {
        let parameters: SamplingParameters
        do {
            parameters = try JSONDecoder().decode(SamplingParameters.self, from: Data(state.parameters))
                .validated(vocabularySize: vocabularySize)
        } catch {
            throw WorkerError(.badCompletion, "the sampling parameters in the completion are unusable", cause: error)
        }
        guard parameters.seed != nil else {
            throw WorkerError(.badCompletion, "the completion's sampling parameters carry no seed")
        }
        guard firstToken >= 0 && Int(firstToken) < vocabularySize else {
            throw WorkerError(.badCompletion, "first token \(firstToken) is outside the vocabulary (0..<\(vocabularySize))")
        }
        var sampler = Sampler(parameters: parameters, vocabularySize: vocabularySize)
        sampler.accept(contentsOf: state.recentTokens)
        // Finite but far below any real logit: every truncation keeps only the first token, whose weight is
        // then 1, so the draw consumes exactly the random number the prefill side consumed and records the token.
        var logits = [Float](repeating: -1e30, count: vocabularySize)
        logits[Int(firstToken)] = 0
        let replayed = sampler.sample(logits: &logits)
        guard replayed.id == firstToken else {
            throw WorkerError(.badCompletion, "could not replay the first token \(firstToken) (got \(replayed.id))")
        }
        return (sampler, parameters)
    }
}
