import Foundation
import GGUF
import Generation
import Testing
import Tokenization

@testable import Inference

/// The one token loop: what `baton generate`, `baton serve` and every decode worker run.
@Suite("Decode scheduler", .serialized)
struct DecodeSchedulerTests {
    static let tokenizer: Result<Tokenizer, any Error> = Result { try Tokenizer(gguf: try EngineTestModel.model().file) }

    static func scheduler(
        blocks: Int = 64, maxBatch: Int = 4, context: Int = 256, prefill: Bool = true, maxQueued: Int = 256,
        prefixCaching: Bool = true
    ) throws -> DecodeScheduler {
        var configuration = DecodeScheduler.Configuration(
            kvBlocks: blocks, maxBatch: maxBatch, threads: 2, maxContext: context, prefillEngine: prefill)
        configuration.maxQueued = maxQueued
        configuration.prefixCaching = prefixCaching
        let scheduler = try DecodeScheduler(model: try EngineTestModel.model(), tokenizer: try tokenizer.get(), configuration: configuration)
        scheduler.start()
        return scheduler
    }

    static func state(
        _ prompt: [Int32], id: String = "test", maxTokens: Int, temperature: Float = 0, seed: UInt64 = 7,
        logprobs: Int? = nil, stop: Set<Int32> = []
    ) -> GenerationState {
        GenerationState(
            request: GenerationRequest(
                id: id, prompt: prompt, maxNewTokens: maxTokens,
                sampling: SamplingParameters(temperature: temperature, seed: seed, logprobs: logprobs), stopTokenIDs: stop))
    }

    static func prompt(_ text: String) throws -> [Int32] {
        try tokenizer.get().encodePrompt(text)
    }

    /// Every token and the summary of a stream.
    static func collect(_ stream: GenerationStream) async throws -> ([GeneratedToken], GenerationSummary) {
        var tokens: [GeneratedToken] = []
        for try await event in stream {
            switch event {
            case .token(let token): tokens.append(token)
            case .finished(let summary): return (tokens, summary)
            }
        }
        throw InferenceError(.invalidArgument, "the stream ended without finishing")
    }

    static func ids(_ scheduler: DecodeScheduler, _ state: GenerationState) async throws -> [Int32] {
        try await collect(try await scheduler.generate(state)).0.map(\.id)
    }

    /// Waits until the scheduler has freed every block (release happens before a stream ends, but counters are
    /// read from another thread).
    static func allFree(_ scheduler: DecodeScheduler) async -> Bool {
        for _ in 0..<200 {
            let load = scheduler.load
            if load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    @Test("greedy generation streams tokens, stops at max tokens and frees the KV")
    func greedyMaxTokens() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("The capital of France is")
        let (tokens, summary) = try await Self.collect(try await scheduler.generate(Self.state(prompt, maxTokens: 8)))
        #expect(tokens.count == 8)
        #expect(summary == GenerationSummary(reason: .maxTokens, promptTokens: prompt.count, completionTokens: 8))
        #expect(try Self.tokenizer.get().decode(tokens.map(\.id)).hasPrefix(" Paris"))
        #expect(tokens.allSatisfy { $0.random == nil }, "greedy sampling draws nothing")
        #expect(await Self.allFree(scheduler))
    }

    @Test("without a prefill engine the prompt runs through decode steps and gives the same greedy text")
    func decodeOnlyPrompt() async throws {
        let withPrefill = try Self.scheduler()
        let withoutPrefill = try Self.scheduler(prefill: false)
        defer {
            withPrefill.shutdown()
            withoutPrefill.shutdown()
        }
        let state = Self.state(try Self.prompt("The capital of France is"), maxTokens: 4)
        #expect(try await Self.ids(withPrefill, state) == (try await Self.ids(withoutPrefill, state)))
    }

    @Test("a chat reply ends at the end-of-generation token, which is counted but not emitted")
    func endOfGeneration() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let model = try EngineTestModel.model()
        let tokenizer = try Self.tokenizer.get()
        let chat = try ChatPrompt(file: model.file, tokenizer: tokenizer)
        let prompt = try chat.tokens([.user("What is 2 + 2?")])
        let (tokens, summary) = try await Self.collect(try await scheduler.generate(Self.state(prompt, maxTokens: 200)))
        #expect(summary.reason == .endOfGeneration)
        #expect(summary.completionTokens == tokens.count + 1)
        #expect(!tokens.contains { tokenizer.isEndOfGeneration($0.id) })
        #expect(tokenizer.decode(tokens.map(\.id)).contains("4"))
    }

    @Test("a stop token id ends the generation without being emitted")
    func stopToken() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("The capital of France is")
        let free = try await Self.ids(scheduler, Self.state(prompt, maxTokens: 6))
        let (tokens, summary) = try await Self.collect(
            try await scheduler.generate(Self.state(prompt, maxTokens: 6, stop: [free[2]])))
        #expect(tokens.map(\.id) == Array(free.prefix(2)))
        #expect(summary.reason == .stopToken)
        #expect(summary.completionTokens == 3)
    }

    @Test("the same seed gives the same tokens, each with its log-probabilities and generator state")
    func seededReproducible() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let state = Self.state(try Self.prompt("Once upon a time"), maxTokens: 12, temperature: 1, seed: 42, logprobs: 3)
        let first = try await Self.collect(try await scheduler.generate(state)).0
        let second = try await Self.collect(try await scheduler.generate(state)).0
        #expect(first == second)
        #expect(first.count == 12)
        for token in first {
            #expect((token.logprob ?? 1) <= 0)
            #expect(token.topLogprobs.count == 3)
            #expect(token.random?.isValid == true)
        }
        #expect(Set(first.compactMap(\.random)).count == 12, "each draw moves the generator")
    }

    @Test("generations batched together each get the tokens they would get alone")
    func batchedEqualsAlone() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let prompts = try ["The capital of France is", "Once upon a time", "1, 2, 3,"].map(Self.prompt)
        var alone: [[Int32]] = []
        for (index, prompt) in prompts.enumerated() {
            alone.append(try await Self.ids(scheduler, Self.state(prompt, id: "alone-\(index)", maxTokens: 6 + index)))
        }
        let together = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for (index, prompt) in prompts.enumerated() {
                group.addTask { (index, try await Self.ids(scheduler, Self.state(prompt, id: "batch-\(index)", maxTokens: 6 + index))) }
            }
            var results = [[Int32]](repeating: [], count: prompts.count)
            for try await (index, ids) in group { results[index] = ids }
            return results
        }
        #expect(together == alone)
        #expect(scheduler.load.largestBatch >= 2)
    }

    @Test("cancelling a stream, or dropping it, frees its KV before the next generation")
    func cancellationFreesKV() async throws {
        let scheduler = try Self.scheduler()
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("Once upon a time")
        let stream = try await scheduler.generate(Self.state(prompt, id: "cancelled", maxTokens: 200))
        var seen = 0
        for try await event in stream {
            if case .token = event { seen += 1 }
            if seen == 3 { break }
        }
        stream.cancel(reason: "test")
        #expect(await Self.allFree(scheduler))
        do {
            _ = try await scheduler.generate(Self.state(prompt, id: "dropped", maxTokens: 200))
        }
        #expect(await Self.allFree(scheduler))

        #expect(scheduler.load.cancelled == 2)
        #expect(try await Self.ids(scheduler, Self.state(prompt, id: "after", maxTokens: 2)).count == 2)
    }

    @Test("a generation that cannot fit now waits for room; beyond the queue bound it is refused as overloaded")
    func queueingAndOverload() async throws {
        // Room for one 96-token budget at a time (16 tokens per block), one more may wait.
        let scheduler = try Self.scheduler(blocks: 6, maxQueued: 1)
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("Once upon a time")
        let first = try await scheduler.generate(Self.state(prompt, id: "first", maxTokens: 90))
        let second = Task { try await Self.ids(scheduler, Self.state(prompt, id: "second", maxTokens: 90)) }
        for _ in 0..<200 where scheduler.load.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(scheduler.load.waiting == 1, "the second waits for room instead of failing")
        let third = await #expect(throws: GenerationError.self) {
            _ = try await scheduler.generate(Self.state(prompt, id: "third", maxTokens: 90))
        }
        #expect(third?.code == .overloaded)
        _ = try await Self.collect(first)
        #expect(try await second.value.count > 0)
        let never = await #expect(throws: GenerationError.self) {
            _ = try await scheduler.generate(Self.state([Int32](repeating: 504, count: 120), id: "never", maxTokens: 100))
        }
        #expect(never?.code == .contextLengthExceeded)
    }

    @Test("a request id already live is refused; after shutdown every open is refused as unavailable")
    func duplicatesAndShutdown() async throws {
        let scheduler = try Self.scheduler()
        let prompt = try Self.prompt("Once upon a time")
        let running = try await scheduler.generate(Self.state(prompt, id: "same", maxTokens: 100))
        let duplicate = await #expect(throws: GenerationError.self) {
            _ = try await scheduler.generate(Self.state(prompt, id: "same", maxTokens: 2))
        }
        #expect(duplicate?.code == .invalidArgument)
        #expect(await scheduler.health() == .ready)
        scheduler.shutdown()
        let ended = await #expect(throws: GenerationError.self) { _ = try await Self.collect(running) }
        #expect(ended?.code == .unavailable)
        let refused = await #expect(throws: GenerationError.self) {
            _ = try await scheduler.generate(Self.state(prompt, id: "late", maxTokens: 2))
        }
        #expect(refused?.code == .unavailable)
        #expect(await scheduler.health() != .ready)
    }

    /// The prompt's KV and last logits computed by a prefill engine, as a prefill worker ships them.
    static func prefilled(_ prompt: [Int32]) throws -> (layers: [[UInt8]], logits: [Float]) {
        let model = try EngineTestModel.model()
        let cache = try EngineTestModel.cache(model, blocks: 32)
        let engine = try PrefillEngine(model: model, cache: cache, threads: 2, maxContext: 256)
        let sequence = cache.createSequence()
        defer { cache.free(sequence) }
        let logits = try engine.prefill(prompt, sequence: sequence)
        return (try (0..<cache.layout.layers).map { try cache.exportLayer(sequence, layer: $0) }, logits)
    }

    /// Lands `layers` in an arrival, half of them in place and half copied, as transports do.
    static func land(_ layers: [[UInt8]], logits: [Float], in arrival: DecodeScheduler.KVArrival) throws {
        for (layer, bytes) in layers.enumerated() {
            if layer % 2 == 0, let regions = arrival.landingRegions(layer: layer) {
                var offset = 0
                for region in regions {
                    bytes.withUnsafeBytes { region.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + region.count])) }
                    offset += region.count
                }
                try arrival.layerLanded(layer)
            } else {
                try bytes.withUnsafeBytes { try arrival.receiveLayer(layer, bytes: $0) }
            }
        }
        try arrival.complete(logits: logits)
    }

    @Test("a prompt whose KV and logits arrive by transfer gives the tokens of one run here")
    func transferEqualsLocal() async throws {
        // Whole prompts arrive here (a cached prefix would shorten the second one's transfer: MissingBlocksTests).
        let scheduler = try Self.scheduler(prefill: false, prefixCaching: false)
        let local = try Self.scheduler()
        defer {
            scheduler.shutdown()
            local.shutdown()
        }
        let prompt = try Self.prompt("Once upon a time, in a small village at the edge of a great forest,")
        for temperature: Float in [0, 0.9] {
            let state = Self.state(prompt, id: "t-\(temperature)", maxTokens: 16, temperature: temperature, seed: 11)
            let stream = try await scheduler.open(state, prompt: .transfer(timeout: .seconds(30)))
            let wrongLength = #expect(throws: InferenceError.self) {
                _ = try scheduler.beginArrival(requestID: state.request.id, tokenCount: prompt.count + 1, transport: "test")
            }
            #expect(wrongLength != nil)
            let arrival = try scheduler.beginArrival(requestID: state.request.id, tokenCount: prompt.count, transport: "test")
            let (layers, logits) = try Self.prefilled(prompt)
            try Self.land(layers, logits: logits, in: arrival)
            let (tokens, summary) = try await Self.collect(stream)
            #expect(tokens.map(\.id) == (try await Self.ids(local, state)), "temperature \(temperature)")
            #expect(summary.handoff?.transport == "test")
            #expect(summary.handoff?.bytes == layers.reduce(0) { $0 + $1.count })
        }
        #expect(await Self.allFree(scheduler))
    }

    @Test("a transfer that does not arrive in time fails the generation as a timeout and frees its room")
    func transferTimeout() async throws {
        let scheduler = try Self.scheduler(prefill: false)
        defer { scheduler.shutdown() }
        let state = Self.state(try Self.prompt("Once upon a time"), id: "late", maxTokens: 4)
        let stream = try await scheduler.open(state, prompt: .transfer(timeout: .milliseconds(200)))
        #expect(scheduler.load.uncommittedBlocks < scheduler.load.totalBlocks)
        let error = await #expect(throws: GenerationError.self) { _ = try await Self.collect(stream) }
        #expect(error?.code == .timeout)
        #expect(await Self.allFree(scheduler))
        let unknown = #expect(throws: InferenceError.self) {
            _ = try scheduler.beginArrival(requestID: "late", tokenCount: 4, transport: "test")
        }
        #expect(unknown != nil)
    }

    @Test(
        "a state taken after k tokens continues on a fresh scheduler with exactly the undisturbed tokens",
        arguments: [(Float(0), 1), (0, 5), (0, 13), (0.8, 1), (0.8, 6), (1.2, 12)])
    func resumeFromState(temperature: Float, k: Int) async throws {
        let first = try Self.scheduler()
        let second = try Self.scheduler()
        let overTransfer = try Self.scheduler(prefill: false)
        defer {
            first.shutdown()
            second.shutdown()
            overTransfer.shutdown()
        }
        let prompt = try Self.prompt("The old clockmaker wound every clock on the wall, and")
        let state = Self.state(prompt, id: "resume", maxTokens: 20, temperature: temperature, seed: 2024)
        let undisturbed = try await Self.collect(try await first.generate(state)).0.map(\.id)
        #expect(undisturbed.count == 20)

        // The first k tokens, and the state after them, as the router keeps it.
        var taken = state
        let stream = try await first.generate(state)
        for try await event in stream {
            guard case .token(let token) = event else { continue }
            taken.append(token)
            if taken.generated.count == k { break }
        }
        stream.cancel(reason: "the worker died")
        #expect(taken.generated == Array(undisturbed.prefix(k)))
        #expect(taken.random == nil || temperature > 0)

        // Continued here, with the prompt run here.
        let rest = try await Self.collect(try await second.generate(taken))
        #expect(taken.generated + rest.0.map(\.id) == undisturbed)
        #expect(rest.1.completionTokens == 20)

        // Continued with the prompt's KV arriving by transfer.
        let continued = try await overTransfer.open(taken, prompt: .transfer(timeout: .seconds(30)))
        let (layers, logits) = try Self.prefilled(prompt)
        try Self.land(layers, logits: logits, in: try overTransfer.beginArrival(requestID: "resume", tokenCount: prompt.count, transport: "test"))
        #expect(taken.generated + (try await Self.collect(continued)).0.map(\.id) == undisturbed)

        // Continued on a scheduler without a prefill engine, the prompt run here on the path the first run used:
        // it builds a prefill engine rather than take decode steps, which round differently.
        var onPrefillPath = taken
        onPrefillPath.promptPath = .prefill
        #expect(overTransfer.promptPath(for: onPrefillPath, source: .computeHere) == .prefill)
        #expect(overTransfer.promptPath(for: taken, source: .computeHere) == .decode)
        let local = try await Self.collect(try await overTransfer.generate(onPrefillPath))
        #expect(taken.generated + local.0.map(\.id) == undisturbed)
    }

    @Test("a transfer's clock runs from its start: a prompt queued longer than the progress bound still lands")
    func transferClockStartsWithThePrefill() async throws {
        let scheduler = try Self.scheduler(prefill: false)
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("Once upon a time")
        let state = Self.state(prompt, id: "queued", maxTokens: 4)
        let stream = try await scheduler.open(state, prompt: .transfer(timeout: .seconds(20), progress: .milliseconds(300)))
        // The prefill worker's queue: longer than the progress bound, well inside the start bound.
        try await Task.sleep(for: .milliseconds(800))
        let (layers, logits) = try Self.prefilled(prompt)
        try Self.land(layers, logits: logits, in: try scheduler.beginArrival(requestID: "queued", tokenCount: prompt.count, transport: "test"))
        let (tokens, _) = try await Self.collect(stream)
        #expect(tokens.count == 4)
        #expect(await Self.allFree(scheduler))
    }

    @Test("a transfer that stalls between layers past its progress bound fails as a timeout and frees its room")
    func stalledTransferTimesOut() async throws {
        let scheduler = try Self.scheduler(prefill: false)
        defer { scheduler.shutdown() }
        let prompt = try Self.prompt("Once upon a time")
        let state = Self.state(prompt, id: "stalled", maxTokens: 4)
        let stream = try await scheduler.open(state, prompt: .transfer(timeout: .seconds(20), progress: .milliseconds(300)))
        let (layers, _) = try Self.prefilled(prompt)
        let arrival = try scheduler.beginArrival(requestID: "stalled", tokenCount: prompt.count, transport: "test")
        try layers[0].withUnsafeBytes { try arrival.receiveLayer(0, bytes: $0) }
        // Then nothing: the scheduler gives up, so the transport's next layer is refused and it stops.
        let deadline = ContinuousClock.now + .seconds(10)
        while arrival.landingRegions(layer: 1) != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(throws: InferenceError.self) { try layers[1].withUnsafeBytes { try arrival.receiveLayer(1, bytes: $0) } }
        arrival.fail("stopped")
        let error = await #expect(throws: GenerationError.self) { _ = try await Self.collect(stream) }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("made no progress for 0.3 s") == true, "\(String(describing: error))")
        #expect(await Self.allFree(scheduler))
    }
}
