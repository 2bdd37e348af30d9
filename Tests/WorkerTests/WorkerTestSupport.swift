import GGUF
import Inference
import KVTransport
import Tokenization
import Testing
import Worker

/// The suites that use `HandoffFixture` nest here and run one test at a time: its prefill engine (and the
/// reference generator on it) has one owner at a time, and each test's shipper runs it on its own thread.
@Suite("Suites sharing the hand-off fixture's engine", .serialized)
struct SharedFixtureSuites {}

/// The default model loaded once, with both halves of a disaggregated pair and a single-process reference.
/// Missing model: every test using it fails with the fetch command.
final class HandoffFixture: @unchecked Sendable {
    let model: TransformerModel
    let tokenizer: Tokenizer
    let identity: KVCompatibilityIdentity
    /// The prefill worker's cache and engine (shared with `reference` as in `baton generate`).
    let prefillCache: PagedKVCache
    let prefill: PrefillEngine
    let reference: Generator
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
        let decode = try DecodeEngine(model: model, cache: prefillCache, threads: 2, maxBatch: 1, maxContext: Self.context)
        reference = try Generator(tokenizer: tokenizer, prefill: prefill, decode: decode)
    }

    /// A fresh decode worker: its own cache of `blocks` blocks.
    func decodeWorker(blocks: Int = 32) throws -> DecodeKVReceiver {
        let cache = try PagedKVCache(layout: model.kvCacheLayout(), blockCount: blocks)
        let engine = try DecodeEngine(model: model, cache: cache, threads: 2, maxBatch: 1, maxContext: Self.context)
        return try DecodeKVReceiver(engine: engine, tokenizer: tokenizer, identity: identity)
    }

    var prompt: [Int32] {
        tokenizer.encode(
            "Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker. "
                + "Every morning he opened his shop and wound every clock on the wall, and the children came to listen.")
    }
}

/// The next event of `receiver` (fails the test on none within 20 s).
func nextEvent(_ receiver: DecodeKVReceiver) async throws -> DecodeEvent {
    try await withThrowingTaskGroup(of: DecodeEvent?.self) { group in
        group.addTask {
            var iterator = receiver.events.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: .seconds(20))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let event = first else {
            throw WorkerError(.invalidArgument, "no decode event within 20 s")
        }
        return event
    }
}
