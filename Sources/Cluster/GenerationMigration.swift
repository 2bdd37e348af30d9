import Generation

/// The router's bookkeeping for one generation that may move between workers: the `GenerationState` as the client
/// has received it (every token handed on, and the generator's state after the last of them), the workers that
/// failed it, and the migrations left. Pure: the backend feeds it what happened and performs what it answers.
///
/// Call order: `opened` when a decode worker took the generation, `delivered` for every token handed to the
/// consumer (in order), `failed` when the worker(s) serving it failed; `cancel` when the consumer gave up.
struct GenerationMigration: Sendable {
    /// What failed, as the `reason` label of `baton_router_migrations_total`.
    enum Reason: String, Sendable, CaseIterable {
        /// The decode worker's stream broke or ended without finishing (process gone, connection reset).
        case decodeLost = "decode_lost"
        /// The decode worker's stream stayed silent past the idle bound (a hung process or a cut link).
        case decodeSilent = "decode_silent"
        /// The decode worker reported a failure of its own (internal error, shutting down).
        case decodeFailed = "decode_failed"
        /// The prefill worker failed, or the KV transfer from it broke or stalled.
        case prefillFailed = "prefill_failed"
    }

    /// One failure of the workers serving the generation.
    struct Failure: Sendable {
        var reason: Reason
        /// The worker to leave out from now on.
        var worker: String
        var error: GenerationError
    }

    enum Action: Sendable {
        /// Continue `state` elsewhere, leaving out `excluding`. The state runs on the workers under its own id
        /// (`<request id>/<migration>`): a worker still releasing the failed attempt (a reset stream, a cancelled
        /// shipment) never takes the new one for it.
        case resume(GenerationState, excluding: [String])
        /// Give the client `error`: the generation ends.
        case fail(GenerationError)
    }

    /// The generation as the client has it.
    private(set) var state: GenerationState
    let maxMigrations: Int
    private(set) var migrations = 0
    /// Workers that failed this generation, in order.
    private(set) var excluded: [String] = []
    /// Prompt and generated tokens run again on new workers, summed over the migrations.
    private(set) var recomputedTokens = 0
    private(set) var cancelled = false

    init(state: GenerationState, maxMigrations: Int) {
        self.state = state
        self.maxMigrations = max(0, maxMigrations)
    }

    /// A decode worker took the generation and computes (or receives) its prompt on `path`: a continuation must
    /// rebuild it the same way. The first path wins: later workers follow it.
    mutating func opened(promptPath: PromptPath?) {
        if state.promptPath == nil { state.promptPath = promptPath }
    }

    /// `token` reached the consumer.
    mutating func delivered(_ token: GeneratedToken) {
        state.append(token)
    }

    /// The consumer went away: nothing is resumed from now on.
    mutating func cancel() {
        cancelled = true
    }

    /// Decides what follows `failure`: resume while the error is one another worker can get past, the generation
    /// has room left and migrations remain; else the error goes to the client.
    mutating func failed(_ failure: Failure) -> Action {
        guard !cancelled else { return .fail(GenerationError(.cancelled, "the request was cancelled")) }
        guard Self.isResumable(failure.error) else { return .fail(failure.error) }
        guard state.remainingTokens > 0 else { return .fail(failure.error) }
        guard migrations < maxMigrations else {
            let moved = maxMigrations == 0 ? "resuming is off (resume.max_migrations: 0)" : "after \(migrations) migrations"
            return .fail(
                GenerationError(failure.error.code, "\(failure.error.message) (\(moved))", cause: failure.error))
        }
        migrations += 1
        if !excluded.contains(failure.worker) { excluded.append(failure.worker) }
        recomputedTokens += state.request.prompt.count + state.generated.count
        var attempt = state
        attempt.request.id = "\(state.request.id.prefix(GenerationRequest.maximumIDLength - 4))/\(migrations)"
        return .resume(attempt, excluding: excluded)
    }

    /// Errors another worker may get past: a worker lost, silent, failing or shutting down, a broken or late KV
    /// transfer, a full worker. A request refused as invalid, or cancelled, fails the same way anywhere.
    static func isResumable(_ error: GenerationError) -> Bool {
        switch error.code {
        case .failed, .timeout, .unavailable, .kvTransferFailed, .overloaded: true
        default: false
        }
    }
}
