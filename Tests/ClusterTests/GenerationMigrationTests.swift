import Generation
import Testing

@testable import Cluster

/// The router's migration bookkeeping on its own: what state a resume carries, whom it leaves out, and when it
/// gives up.
@Suite("Generation migration")
struct GenerationMigrationTests {
    static func state(maxTokens: Int = 8) -> GenerationState {
        GenerationState(
            request: GenerationRequest(
                id: "r", prompt: [1, 2, 3, 4], maxNewTokens: maxTokens, sampling: SamplingParameters(temperature: 0.8, seed: 7)))
    }

    static func lost(_ worker: String = "decode-0") -> GenerationMigration.Failure {
        .init(reason: .decodeLost, worker: worker, error: GenerationError(.failed, "decode worker \(worker): connection reset"))
    }

    @Test("a resume carries every delivered token, the generator state after the last, and the first prompt path")
    func resumeCarriesTheDeliveredState() throws {
        var migration = GenerationMigration(state: Self.state(), maxMigrations: 3)
        migration.opened(promptPath: .prefill)
        migration.delivered(GeneratedToken(id: 10, random: RandomState(1, 2, 3, 4)))
        migration.delivered(GeneratedToken(id: 11, random: RandomState(5, 6, 7, 8)))
        guard case .resume(let state, let excluding) = migration.failed(Self.lost()) else {
            Issue.record("a lost decode worker with migrations left is resumed")
            return
        }
        #expect(state.generated == [10, 11])
        #expect(state.request.id == "r/1", "each attempt has its own id on the workers")
        #expect(migration.state.request.id == "r")
        #expect(state.random == RandomState(5, 6, 7, 8))
        #expect(state.promptPath == .prefill)
        #expect(excluding == ["decode-0"])
        #expect(migration.recomputedTokens == 4 + 2)
        // The next worker reports another path: the first one stands, so every continuation computes alike.
        migration.opened(promptPath: .decode)
        #expect(migration.state.promptPath == .prefill)
    }

    @Test("every worker that failed the request stays left out, and the budget bounds the migrations")
    func budgetAndExclusions() {
        var migration = GenerationMigration(state: Self.state(), maxMigrations: 2)
        guard case .resume(_, let first) = migration.failed(Self.lost("decode-0")) else {
            Issue.record("first")
            return
        }
        #expect(first == ["decode-0"])
        let prefill = GenerationMigration.Failure(
            reason: .prefillFailed, worker: "prefill-0", error: GenerationError(.kvTransferFailed, "the transfer broke"))
        guard case .resume(_, let second) = migration.failed(prefill) else {
            Issue.record("second")
            return
        }
        #expect(second == ["decode-0", "prefill-0"])
        guard case .fail(let error) = migration.failed(Self.lost("decode-1")) else {
            Issue.record("a third failure exceeds a budget of 2")
            return
        }
        #expect(error.code == .failed)
        #expect(error.message.contains("after 2 migrations"))
        #expect(migration.migrations == 2)
    }

    @Test("errors no other worker can get past, a cancelled request and a finished budget of tokens are not resumed")
    func notResumable() {
        var invalid = GenerationMigration(state: Self.state(), maxMigrations: 3)
        let refused = GenerationMigration.Failure(
            reason: .decodeFailed, worker: "decode-0", error: GenerationError(.invalidArgument, "bad logit_bias"))
        guard case .fail(let error) = invalid.failed(refused) else {
            Issue.record("invalid")
            return
        }
        #expect(error.code == .invalidArgument)

        var cancelled = GenerationMigration(state: Self.state(), maxMigrations: 3)
        cancelled.cancel()
        guard case .fail(let gone) = cancelled.failed(Self.lost()) else {
            Issue.record("cancelled")
            return
        }
        #expect(gone.code == .cancelled)

        var full = GenerationMigration(state: Self.state(maxTokens: 1), maxMigrations: 3)
        full.delivered(GeneratedToken(id: 10))
        guard case .fail = full.failed(Self.lost()) else {
            Issue.record("nothing left to generate")
            return
        }

        var off = GenerationMigration(state: Self.state(), maxMigrations: 0)
        guard case .fail(let disabled) = off.failed(Self.lost()) else {
            Issue.record("off")
            return
        }
        #expect(disabled.message.contains("resume.max_migrations: 0"))
    }

    @Test("lost, silent, failing and overloaded workers and broken transfers are resumable; the rest are not")
    func resumableCodes() {
        for code: GenerationError.Code in [.failed, .timeout, .unavailable, .kvTransferFailed, .overloaded] {
            #expect(GenerationMigration.isResumable(GenerationError(code, "x")), "\(code)")
        }
        for code: GenerationError.Code in [.invalidArgument, .contextLengthExceeded, .cancelled] {
            #expect(!GenerationMigration.isResumable(GenerationError(code, "x")), "\(code)")
        }
    }
}
