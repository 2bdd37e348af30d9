import ClusterProtocol
import Foundation
import Generation
import RPC
import Testing
import Worker

extension SharedFixtureSuites {
    /// Who may do what on a worker, and how long a reservation may wait: real workers, real certificates.
    @Suite("Worker service authorization and reservations", .serialized)
    struct WorkerServiceAuthorizationTests {
        @Test("KV for a request opened for another prefill worker is refused, naming both, and frees nothing else")
        func kvFromTheWrongPrefillWorker() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let stream = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("theirs", prompt, .greedy, maxTokens: 4), prefillWorker: "prefill-9"))
            var events = stream.messages.makeAsyncIterator()
            #expect(try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next())).opened.requestID == "theirs")
            let stolen = try await pair.submitPrefill(pair.prefillRequest("theirs", prompt: prompt))
            #expect(stolen.status == 502)
            #expect(stolen.bodyText.contains("request theirs was opened for KV from prefill-9, not prefill-0"))
            stream.cancel()
            #expect(try await allFree(pair.scheduler))
            // The pair still serves a request opened for its own prefill worker.
            let outcome = try await pair.run(HandoffFixture.state("ours", prompt, .greedy, maxTokens: 4))
            #expect(outcome.failure == nil && outcome.tokens.count == 4)
        }

        @Test("a reservation may not ask to wait longer than the worker allows, and one nobody feeds is freed after what it asked")
        func reservationExpires() async throws {
            let pair = try await WorkerPair(maximumTransferTimeout: .seconds(20))
            defer { Task { await pair.close() } }
            let hoard = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("hoard", pair.fixture.prompt, .greedy, maxTokens: 4), transferTimeoutMs: 60_000))
            #expect(hoard.status == 400)
            #expect(String(decoding: hoard.body, as: UTF8.self).contains("transfer_timeout_ms 60000 exceeds this worker's limit of 20000"))
            let started = ContinuousClock.now
            let stream = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("idle", pair.fixture.prompt, .greedy, maxTokens: 4), transferTimeoutMs: 500))
            var events = stream.messages.makeAsyncIterator()
            #expect(try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next())).opened.requestID == "idle")
            let last = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(last.failure.code == .timeout)
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect(try await allFree(pair.scheduler))
        }

        @Test("one peer's reservations waiting for KV may not pass its share of the decode worker's blocks")
        func peerShareIsCapped() async throws {
            // 64 blocks of 16 tokens, a quarter for one peer: a request of prompt + 150 tokens (13 blocks) fits once.
            let pair = try await WorkerPair(kvBlocks: 64, peerKVShare: 0.25)
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let first = try await pair.openDecode(pair.openRequest(HandoffFixture.state("one", prompt, .greedy, maxTokens: 150)))
            #expect(first.status == 200)
            let second = try await pair.openDecode(pair.openRequest(HandoffFixture.state("two", prompt, .greedy, maxTokens: 150)))
            #expect(second.status == 429)
            #expect(errorCode(second.body) == "no_room")
            #expect(String(decoding: second.body, as: UTF8.self).contains("router already holds 13 KV blocks waiting for KV here"))
            first.cancel()
            #expect(try await allFree(pair.scheduler))
        }

        @Test("a transferred OpenDecode must name its prefill worker, and a SubmitPrefill its decode worker")
        func namesAreRequired() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let unnamed = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("anon", pair.fixture.prompt, .greedy, maxTokens: 4), prefillWorker: ""))
            #expect(unnamed.status == 400)
            #expect(String(decoding: unnamed.body, as: UTF8.self).contains("prefill_worker is required"))
            var submit = pair.prefillRequest("anon", prompt: pair.fixture.prompt)
            submit.decodeWorker.name = ""
            let anonymous = try await pair.submitPrefill(submit)
            #expect(anonymous.status == 400)
            #expect(anonymous.bodyText.contains("decode_worker needs the decode node's name"))
        }
    }
}
