/// Whatever generates tokens for the router and the CLI: the decode scheduler in this process, or the cluster
/// (a prefill worker and a decode worker chosen by placement). Neither the router nor the CLI knows which.
///
/// ## Contract
/// - `generate(_:)` starts the generation `state` describes — from its first token, or continuing after the
///   tokens it already holds — and returns its stream once the backend has taken it (room reserved). Refusals
///   before that are thrown: `.invalidArgument` / `.contextLengthExceeded` for a request that can never run,
///   `.overloaded` (with `retryAfterSeconds`) or `.unavailable` for one that cannot run now.
/// - The stream yields `.token` events, then exactly one `.finished`, then ends. A failure after `generate`
///   returned is thrown from the stream.
/// - Ending early: see `GenerationStream` (cancel, or drop the stream).
/// - Implementations must be safe to call concurrently from many requests.
public protocol GenerationBackend: Sendable {
    func generate(_ state: GenerationState) async throws(GenerationError) -> GenerationStream

    /// Whether a request could be served now (`GET /health` answers 200 for `.ready` and `.degraded`).
    func health() async -> BackendHealth
}

/// Whether a backend can serve a request now.
public enum BackendHealth: Sendable, Equatable {
    case ready
    /// Serving, but with less than it should have (the cluster's placement service is unreachable, say): shown
    /// with the reason and since when (seconds since 1970).
    case degraded(reason: String, sinceEpochSeconds: Double)
    /// Not servable; the reason is shown to the client of `GET /health`.
    case unavailable(reason: String)
}
