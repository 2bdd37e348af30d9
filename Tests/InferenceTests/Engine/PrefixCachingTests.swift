import Generation
import Testing

@testable import Inference

/// The scheduler's prefix cache: a local prompt starts from the longest cached prefix of it, and a hit gives the
/// very tokens and log-probabilities a miss gives, on both paths.
@Suite("Prefix caching in the decode scheduler", .serialized)
struct PrefixCachingTests {
    typealias S = DecodeSchedulerTests

    /// Runs `states` one after another on `scheduler`; every token with its log-probabilities.
    static func run(_ scheduler: DecodeScheduler, _ states: [GenerationState]) async throws -> [[GeneratedToken]] {
        var outcomes: [[GeneratedToken]] = []
        for state in states { outcomes.append(try await S.collect(try await scheduler.generate(state)).0) }
        return outcomes
    }

    /// A conversation of two turns: the second prompt is the first, its reply and a new question.
    static func turns(_ first: [Int32], reply: [Int32], next: [Int32], temperature: Float) -> [GenerationState] {
        [
            S.state(first, id: "turn-1", maxTokens: 8, temperature: temperature, logprobs: 3),
            S.state(first + reply + next, id: "turn-2", maxTokens: 8, temperature: temperature, logprobs: 3),
        ]
    }

    @Test("on the decode path a second turn reuses the first turn's prompt and reply blocks, bit for bit", arguments: [0, 0.9] as [Float])
    func decodePathTurns(temperature: Float) async throws {
        let first = try S.prompt("The lighthouse keeper climbed the stairs every evening to light the lamp, and the ships")
        let reference = try S.scheduler(prefill: false, prefixCaching: false)
        defer { reference.shutdown() }
        let reply = try await Self.run(reference, [S.state(first, id: "r", maxTokens: 8, temperature: temperature)])[0].map(\.id)
        let next = try S.prompt(" What did the ships do next?")
        let states = Self.turns(first, reply: reply, next: next, temperature: temperature)
        let misses = try await Self.run(reference, states)

        let cached = try S.scheduler(prefill: false)
        defer { cached.shutdown() }
        let hits = try await Self.run(cached, states)
        #expect(hits == misses, "tokens, log-probabilities and generator states")
        let load = cached.load
        // Turn 2 holds turn 1's prompt and the 7 fed reply tokens: every whole block of those.
        let reusable = (first.count + 7) / 16 * 16
        #expect(load.cachedPromptTokens == reusable, "\(load.cachedPromptTokens) of \(load.promptTokens) prompt tokens cached")
        #expect(load.promptTokens == states.map(\.request.prompt.count).reduce(0, +))
        #expect(await S.allFree(cached), "cached blocks count as free")
    }

    @Test("on the prefill path every whole cached block is reused, and the rest equals a miss bit for bit")
    func prefillPathReusesWholeBlocks() async throws {
        let base = try S.prompt(String(repeating: "The committee reviewed the quarterly figures and asked each team to explain. ", count: 50))
        #expect(base.count > 560)
        let first = Array(base[..<540]), second = Array(base[..<530]) + (try S.prompt(" Summarize the meeting."))
        let states = [
            S.state(first, id: "a", maxTokens: 4, logprobs: 3), S.state(second, id: "b", maxTokens: 4, logprobs: 3),
            S.state(Array(base[..<500]), id: "c", maxTokens: 4, logprobs: 3),
        ]
        let reference = try S.scheduler(blocks: 128, context: 1024, prefixCaching: false)
        defer { reference.shutdown() }
        let misses = try await Self.run(reference, states)
        let cached = try S.scheduler(blocks: 128, context: 1024)
        defer { cached.shutdown() }
        let hits = try await Self.run(cached, states)
        #expect(hits == misses)
        // b shares 530 tokens with a and reuses 33 of a's blocks (528 tokens, not a whole 512-token pass and the
        // start of the next); c, shorter than a pass, reuses 31 (496 tokens, one short of its last).
        #expect(cached.load.cachedPromptTokens == 528 + 496)
    }

    @Test("under cache pressure old prefixes are evicted and every request still runs")
    func evictionUnderPressure() async throws {
        // 12 blocks of 16 tokens: one generation of up to 192 tokens at a time, and no room to keep many prefixes.
        let cached = try S.scheduler(blocks: 12, maxBatch: 1, context: 192, prefill: false)
        defer { cached.shutdown() }
        let reference = try S.scheduler(blocks: 12, maxBatch: 1, context: 192, prefill: false, prefixCaching: false)
        defer { reference.shutdown() }
        var states: [GenerationState] = []
        for i in 0..<6 {
            let prompt = try S.prompt("Request number \(i): tell a short story about the number \(i * 7) and a cat named Tom.")
            states.append(S.state(prompt + prompt, id: "p\(i)", maxTokens: 6))
            states.append(S.state(prompt + prompt + prompt, id: "q\(i)", maxTokens: 6))
        }
        let hits = try await Self.run(cached, states)
        #expect(hits.map { $0.map(\.id) } == (try await Self.run(reference, states)).map { $0.map(\.id) })
        #expect(cached.load.cachedPromptTokens > 0, "each q request reuses its p request's blocks")
        #expect(await S.allFree(cached))
    }

    @Test("without prefix caching nothing is reused")
    func disabled() async throws {
        let scheduler = try S.scheduler(prefill: false, prefixCaching: false)
        defer { scheduler.shutdown() }
        let prompt = try S.prompt("The same prompt twice, long enough to fill two blocks of sixteen tokens each, at least.")
        _ = try await Self.run(scheduler, [S.state(prompt, id: "x", maxTokens: 2), S.state(prompt, id: "y", maxTokens: 2)])
        #expect(scheduler.load.cachedPromptTokens == 0 && scheduler.load.promptTokens == 2 * prompt.count)
    }
}
