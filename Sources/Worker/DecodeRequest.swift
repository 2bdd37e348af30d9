import Inference
import KVTransport

/// A generation a decode worker is asked to run (the scheduler's view of `OpenDecodeRequest`).
public struct DecodeRequest: Sendable {
    /// Unique among the worker's live requests; a prefill worker's KV transfer names it.
    public var requestID: String
    /// The prompt (at least one token, fewer than the worker's context).
    public var prompt: [Int32]
    /// Most tokens to generate, the end-of-generation token included; nil: until the context is full.
    public var maxNewTokens: Int?
    /// How to sample when the prompt runs here. For a transferred prompt the prefill worker's parameters
    /// travel with the KV (with the seed it used) and are the ones that count.
    public var parameters: SamplingParameters
    /// Run the prompt on this worker instead of waiting for a KV transfer.
    public var prefillHere: Bool
    /// Longest wait for the transfer to complete after the request was opened; nil: the scheduler's default.
    public var transferTimeout: Duration?

    public init(
        requestID: String, prompt: [Int32], maxNewTokens: Int?, parameters: SamplingParameters, prefillHere: Bool,
        transferTimeout: Duration? = nil
    ) {
        self.requestID = requestID
        self.prompt = prompt
        self.maxNewTokens = maxNewTokens
        self.parameters = parameters
        self.prefillHere = prefillHere
        self.transferTimeout = transferTimeout
    }
}

/// Why a generation ended normally.
public enum DecodeFinishReason: String, Sendable, Equatable {
    /// The model produced an end-of-generation token.
    case endOfGeneration
    /// `maxNewTokens` tokens were produced.
    case maxTokens
    /// The sequence filled the worker's context.
    case contextFull
}

/// Why a generation could not run or stopped early; nothing of it is left on the worker.
public enum DecodeFailureKind: String, Sendable, Equatable {
    /// The request is malformed or names a request id already live here.
    case invalidArgument
    /// The KV pool cannot hold prompt + max new tokens next to what is already committed: retry later.
    case noRoom
    /// The worker is shutting down.
    case draining
    /// The KV transfer failed (the prefill worker's transport error, or a bad completion).
    case transferFailed
    /// The KV transfer did not complete within the transfer timeout.
    case timeout
    /// Cancelled by a `Cancel` request.
    case cancelled
    /// The engine failed.
    case `internal`
}

/// The summary of a finished generation.
public struct DecodeOutcome: Sendable, Equatable {
    public var reason: DecodeFinishReason
    public var promptTokens: Int
    /// Tokens produced, the end-of-generation token included when it was produced (it is not streamed).
    public var completionTokens: Int
    /// How the prompt's KV arrived; nil when the prompt ran here.
    public var transport: KVTransportKind?
    public var kvBytes: Int
    /// From the transfer's handshake to its completion.
    public var kvTransferSeconds: Double
}

/// What a decode request's stream carries, in order: `opened`, `token`…, then exactly one `finished` or
/// `failed` (possibly without `opened` when the request is refused at once).
public enum DecodeUpdate: Sendable {
    /// Room is reserved (and, for a transfer, the worker now accepts the KV under this request id).
    case opened
    /// One generated token, with log-probabilities when the parameters asked for them. The first token of a
    /// transferred request was sampled by the prefill worker and carries none.
    case token(SampledToken)
    case finished(DecodeOutcome)
    case failed(DecodeFailureKind, String)
    /// Never produced by the scheduler: a caller sharing the stream may add it to keep a connection alive.
    case keepAlive
}
