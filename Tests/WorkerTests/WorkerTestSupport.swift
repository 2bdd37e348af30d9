import GGUF
import Generation
import Inference
import KVTransport
import Testing
import Tokenization
import Worker

/// The suites that use `HandoffFixture` nest here and run one test at a time: its prefill engine has one owner at
/// a time, and each test's shipper runs it on its own thread.
@Suite("Suites sharing the hand-off fixture's engine", .serialized)
struct SharedFixtureSuites {}

/// The default model loaded once, with a prefill worker's engine and a single-process reference (a decode
/// scheduler running prompts itself, as `baton serve`). Missing model: every test using it fails with the fetch
/// command.
final class HandoffFixture: @unchecked Sendable {
    let model: TransformerModel
    let tokenizer: Tokenizer
    let identity: KVCompatibilityIdentity
    /// The prefill worker's cache and engine.
    let prefillCache: PagedKVCache
    let prefill: PrefillEngine
    /// What `baton serve` runs: the reference every split generation must equal.
    let reference: DecodeScheduler
    static let context = 256

    static let shared: Result<HandoffFixture, any Error> = Result { try HandoffFixture() }

    static func get() throws -> HandoffFixture { try shared.get() }

    private init() throws {
        let path = try DefaultModel.resolve(nil)
        let file = try GGUFFile(path: path)
        model = try TransformerModel(file: file)
        tokenizer = try Tokenizer(gguf: file)
        let layout = model.kvCacheLayout()
        identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
        prefillCache = try PagedKVCache(layout: layout, blockCount: 2 * Self.context / layout.blockSize)
        prefill = try PrefillEngine(model: model, cache: prefillCache, threads: 2, maxContext: Self.context)
        var settings = DecodeScheduler.Configuration(kvBlocks: 64, maxBatch: 8, threads: 2, maxContext: Self.context)
        settings.prefillWeights = prefill.weights
        reference = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: settings)
        reference.start()
    }

    /// A fresh decode worker's scheduler (decode-only, `blocks` blocks) and its KV receive path.
    func decodeWorker(
        blocks: Int = 32, prefixCaching: Bool = true
    ) throws -> (scheduler: DecodeScheduler, receiver: SchedulerKVReceiver) {
        var configuration = DecodeScheduler.Configuration(
            kvBlocks: blocks, maxBatch: 8, threads: 2, maxContext: Self.context, prefillEngine: false)
        configuration.prefixCaching = prefixCaching
        let scheduler = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: configuration)
        scheduler.start()
        return (scheduler, try SchedulerKVReceiver(scheduler: scheduler, identity: identity))
    }

    var prompt: [Int32] {
        tokenizer.encode(
            "Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker. "
                + "Every morning he opened his shop and wound every clock on the wall, and the children came to listen.")
    }

    /// A generation of `prompt` with `sampling`, seeded (greedy when the sampling is).
    static func state(
        _ id: String, _ prompt: [Int32], _ sampling: SamplingParameters, maxTokens: Int
    ) -> GenerationState {
        var sampling = sampling
        if sampling.seed == nil { sampling.seed = 1 }
        return GenerationState(request: GenerationRequest(id: id, prompt: prompt, maxNewTokens: maxTokens, sampling: sampling))
    }

    /// The reference's tokens for `state` (what one process generates).
    func referenceTokens(_ state: GenerationState) async throws -> [Int32] {
        try await collect(try await reference.generate(state)).tokens.map(\.id)
    }
}

/// Every token and the summary of a stream.
func collect(_ stream: GenerationStream) async throws -> (tokens: [GeneratedToken], summary: GenerationSummary) {
    var tokens: [GeneratedToken] = []
    for try await event in stream {
        switch event {
        case .token(let token): tokens.append(token)
        case .finished(let summary): return (tokens, summary)
        }
    }
    throw WorkerError(.invalidArgument, "the stream ended without finishing")
}

/// Waits (at most 10 s) until `condition` holds.
func eventually(_ what: String, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("not within 10 s: \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Whether every block of `scheduler` is free and uncommitted (within 10 s).
func allFree(_ scheduler: DecodeScheduler) async throws -> Bool {
    try await eventually("every block is free") {
        let load = scheduler.load
        return load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks
    }
    let load = scheduler.load
    return load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks
}
