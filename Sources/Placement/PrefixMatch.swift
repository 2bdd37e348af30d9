import Generation

/// How much of one prompt each worker's prefix caches hold, as far as a `PrefixIndex` knows: the longest run of
/// the prompt's leading full blocks, hashed as the worker's caches hash them (`PrefixHash`), that the cache holds.
/// `Placement.choose` scores candidates by it (prefill work saved) and decides on it whether a split pays.
///
/// An estimate, never a promise: the worker confirms every block against its tokens, and may have evicted it since
/// its last batch. At least one prompt token is always left to compute (for the logits).
public struct PrefixMatch: Sendable, Equatable {
    /// Knows of no cached prefix anywhere (no index, or a caller that does not look).
    public static let none = PrefixMatch()

    private struct Key: Hashable {
        var worker: String
        var cache: WorkerRole
        var path: PromptPath
    }

    /// Prompt tokens this matches against.
    public private(set) var promptTokens = 0
    /// The path the request's prompt must take wherever it runs (a continued generation); nil: the placement's.
    public private(set) var pinnedPath: PromptPath?
    private var tokens: [Key: Int] = [:]

    private init() {}

    /// Matches `prompt` against every worker in `index`. `pinnedPath`: the path a continued generation's prompt
    /// must be rebuilt on.
    public init(prompt: [Int32], pinnedPath: PromptPath? = nil, index: PrefixIndex) {
        promptTokens = prompt.count
        self.pinnedPath = pinnedPath
        var chains: [Int: [PromptPath: [UInt64]]] = [:]
        for (worker, holdings) in index.workers {
            var byPath = chains[holdings.blockSize] ?? [:]
            for cache in [WorkerRole.decode, .prefill] {
                let held = holdings.hashes(cache)
                guard !held.isEmpty else { continue }
                for path in [PromptPath.prefill, .decode] {
                    let chain = byPath[path] ?? PrefixHash.chain(prompt, blockSize: holdings.blockSize, namespace: path.prefixNamespace)
                    byPath[path] = chain
                    var blocks = 0
                    while blocks < chain.count, held.contains(chain[blocks]) { blocks += 1 }
                    if blocks > 0 {
                        tokens[Key(worker: worker, cache: cache, path: path)] = min(blocks * holdings.blockSize, max(0, prompt.count - 1))
                    }
                }
            }
            chains[holdings.blockSize] = byPath
        }
    }

    /// An assumed match, for explaining a placement offline: each named worker's caches hold its first `cached[name]`
    /// tokens of a `promptTokens`-token prompt, on either path.
    public init(promptTokens: Int, assuming cached: [String: Int]) {
        self.promptTokens = promptTokens
        for (worker, held) in cached where held > 0 {
            for cache in [WorkerRole.decode, .prefill] {
                for path in [PromptPath.prefill, .decode] {
                    tokens[Key(worker: worker, cache: cache, path: path)] = min(held, max(0, promptTokens - 1))
                }
            }
        }
    }

    /// Prompt tokens `worker`'s `cache` (`.decode`: its decode scheduler's, `.prefill`: its prefill queue's) holds
    /// computed on `path`, ready to adopt.
    public func cachedTokens(worker: String, cache: WorkerRole, path: PromptPath) -> Int {
        tokens[Key(worker: worker, cache: cache, path: path)] ?? 0
    }

    /// Whether any worker holds any of the prompt.
    public var isEmpty: Bool { tokens.isEmpty }
}
