/// A worker's load as reported in its heartbeats.
public struct WorkerLoad: Codable, Sendable, Equatable {
    /// Requests waiting, not yet started.
    public var queueDepth: Int
    /// Sequences being prefilled or decoded now.
    public var activeSequences: Int
    /// Free KV cache blocks.
    public var freeKVBlocks: Int
    /// All KV cache blocks; nil when the worker does not report it (then KV fullness is not part of its load).
    public var totalKVBlocks: Int?
    /// Mean time to first token over the worker's recent requests, ms; nil when it has none yet.
    public var recentTTFTMs: Double?
    /// Mean time per output token over recent requests, ms; nil when it has none yet.
    public var recentTPOTMs: Double?
    /// Prompt tokens this worker computed since it started, and how many of them its prefix cache held instead;
    /// nil from a worker that does not report them.
    public var promptTokens: Int?
    public var cachedPromptTokens: Int?
    /// KV bytes that crossed the network for this worker since it started (a decode worker: received; a prefill
    /// worker: sent), and the bytes of prompt positions the decode worker's prefix cache held, which did not have to;
    /// nil from a worker that does not report them.
    public var kvBytesShipped: Int?
    public var kvBytesNotShipped: Int?

    public init(queueDepth: Int = 0, activeSequences: Int = 0, freeKVBlocks: Int = 0, totalKVBlocks: Int? = nil,
                recentTTFTMs: Double? = nil, recentTPOTMs: Double? = nil) {
        self.queueDepth = queueDepth
        self.activeSequences = activeSequences
        self.freeKVBlocks = freeKVBlocks
        self.totalKVBlocks = totalKVBlocks
        self.recentTTFTMs = recentTTFTMs
        self.recentTPOTMs = recentTPOTMs
    }

    enum CodingKeys: String, CodingKey {
        case queueDepth = "queue_depth", activeSequences = "active_sequences", freeKVBlocks = "free_kv_blocks"
        case totalKVBlocks = "total_kv_blocks", recentTTFTMs = "recent_ttft_ms", recentTPOTMs = "recent_tpot_ms"
        case promptTokens = "prompt_tokens", cachedPromptTokens = "cached_prompt_tokens"
        case kvBytesShipped = "kv_bytes_shipped", kvBytesNotShipped = "kv_bytes_not_shipped"
    }
}
