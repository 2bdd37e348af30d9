import ClusterProtocol
import Foundation
import Generation
import Inference
import KVTransport
import Placement
import RPC
import Synchronization
import Testing
import Worker

extension SharedFixtureSuites {
    @Suite("Worker service", .serialized)
    struct WorkerServiceTests {
        static let seeded = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, seed: 1234)

        @Test("a disaggregated request yields the tokens of single-process generation, greedy and seeded")
        func disaggregatedEqualsSingleProcess() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            for (name, parameters) in [("greedy", SamplingParameters.greedy), ("seeded", Self.seeded)] {
                let state = HandoffFixture.state("solo-\(name)", prompt, parameters, maxTokens: 16)
                let expected = try await pair.fixture.referenceTokens(state)
                let outcome = try await pair.run(state)
                #expect(outcome.opened)
                #expect(outcome.failure == nil, "\(outcome.failure.map { "\($0.code): \($0.message)" } ?? "")")
                #expect(outcome.tokens == expected, "\(name)")
                let finished = try #require(outcome.finished)
                #expect(finished.promptTokens == UInt32(prompt.count))
                #expect(finished.transport == .sharedMemory)
                #expect(finished.kvBytes > 0)
                let prefill = try #require(outcome.prefill)
                #expect(prefill.transport == .sharedMemory)
                #expect(prefill.kvBytesSent == finished.kvBytes)
            }
            #expect(try await allFree(pair.scheduler))
        }

        @Test("over mutual TLS, a prompt whose prefix the decode worker holds ships only the rest and equals its cold run")
        func cachedPrefixShipsTheRest() async throws {
            let pair = try await WorkerPair(sharedMemory: false)
            defer { Task { await pair.close() } }
            let fixture = pair.fixture
            let text = fixture.prompt
            let first = Array((text + text + text).prefix(70)), second = Array(first.prefix(64)) + Array(text.suffix(20))
            let identity = fixture.identity
            func bytes(_ tokens: Int, from: Int = 0) -> UInt64 {
                UInt64(identity.layerByteCount(tokenCount: tokens, from: from) * identity.layers)
            }
            for (name, parameters) in [("greedy", SamplingParameters.greedy), ("seeded", Self.seeded)] {
                // Cold: the first time either worker sees this prompt.
                let prompt = name == "greedy" ? first : Array(first.reversed())
                let cold = try await pair.run(HandoffFixture.state("cold-\(name)", prompt, parameters, maxTokens: 12))
                #expect(cold.cachedPromptTokens == 0 && cold.finished?.kvBytes == bytes(prompt.count))
                #expect(cold.prefill?.kvBytesNotSent == 0 && cold.finished?.kvBytesNotShipped == 0)
                let warm = try await pair.run(HandoffFixture.state("warm-\(name)", prompt, parameters, maxTokens: 12))
                #expect(warm.cachedPromptTokens == 64, "\(name)")
                #expect(warm.finished?.kvCachedTokens == 64)
                #expect(warm.finished?.kvBytes == bytes(prompt.count, from: 64))
                #expect(warm.prefill?.kvBytesSent == warm.finished?.kvBytes)
                #expect(warm.prefill?.kvBytesNotSent == bytes(prompt.count) - bytes(prompt.count, from: 64))
                #expect(warm.finished?.kvBytesNotShipped == warm.prefill?.kvBytesNotSent)
                #expect(warm.tokens == cold.tokens, "\(name)")
                #expect(warm.generated == cold.generated, "\(name): log-probabilities and generator states too")
            }
            // Another prompt sharing the first one's two whole passes.
            let shared = try await pair.run(HandoffFixture.state("shared", second, .greedy, maxTokens: 4))
            #expect(shared.cachedPromptTokens == 64 && shared.finished?.kvBytes == bytes(second.count, from: 64))
            let load = pair.decodeNode.service.load()
            #expect(load.kvBytesNotShipped == Int(2 * (bytes(70) - bytes(70, from: 64))) + Int(bytes(84) - bytes(84, from: 64)))
            #expect((pair.prefillNode.service.load().kvBytesNotShipped ?? 0) == load.kvBytesNotShipped)
            #expect(try await allFree(pair.scheduler))
        }

        @Test("two concurrent requests are batched together and each equals its solo run")
        func concurrentRequestsBatch() async throws {
            let pair = try await WorkerPair(sharedMemory: false)
            defer { Task { await pair.close() } }
            let fixture = pair.fixture
            let other = fixture.tokenizer.encode("The three rules of the old lighthouse keeper were simple, and every child knew them by heart:")
            let stateA = HandoffFixture.state("batch-a", fixture.prompt, .greedy, maxTokens: 40)
            let stateB = HandoffFixture.state("batch-b", other, Self.seeded, maxTokens: 40)
            let expectedA = try await fixture.referenceTokens(stateA)
            let expectedB = try await fixture.referenceTokens(stateB)
            async let a = pair.run(stateA)
            async let b = pair.run(stateB)
            let (outcomeA, outcomeB) = try await (a, b)
            #expect(outcomeA.tokens == expectedA)
            #expect(outcomeB.tokens == expectedB)
            #expect(outcomeA.finished?.transport == .tlsHTTP2)
            #expect(pair.scheduler.load.largestBatch >= 2)
        }

        @Test("a decode worker running the prompt itself equals single-process generation on either path")
        func prefillHereEqualsSingleProcess() async throws {
            let fixture = try HandoffFixture.get()
            let state = HandoffFixture.state("here", fixture.prompt, Self.seeded, maxTokens: 12)
            // Decode-only: the prompt goes through decode steps, as a scheduler without a prefill engine runs it.
            let ingestReference = try fixture.decodeWorker()
            let expectedIngest = try await collect(try await ingestReference.scheduler.generate(state)).tokens.map(\.id)
            ingestReference.scheduler.shutdown()

            let decodeOnly = try await WorkerPair()
            let ingested = try await decodeOnly.run(state, prefillHere: true)
            await decodeOnly.close()
            #expect(ingested.tokens == expectedIngest)
            #expect(ingested.finished?.reason == .maxTokens)
            #expect(ingested.finished?.transport == .unspecified)

            let both = try await WorkerPair(decodeRoles: [.decode, .prefill])
            let prefilled = try await both.run(state, prefillHere: true)
            await both.close()
            #expect(prefilled.tokens == (try await fixture.referenceTokens(state)))
        }

        @Test("cancelling the OpenDecode stream frees every block on both workers")
        func cancellingFreesBothSides() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let state = HandoffFixture.state("cancel-me", pair.fixture.prompt, .greedy, maxTokens: 200)
            let outcome = try await pair.run(state, stopAfter: 3)
            #expect(outcome.tokens.count == 3)
            try await eventually("the decode worker frees the request") {
                let load = pair.scheduler.load
                return load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks && load.active == 0
            }
            let load = pair.scheduler.load
            #expect(load.cancelled == 1 && load.finished == 0, "the request ended by cancellation, not by itself")
            let blocks = pair.prefill.kvBlocks
            #expect(blocks.free == blocks.total)
            // The id is free again: a new request under it runs.
            let again = try await pair.run(HandoffFixture.state("cancel-me", pair.fixture.prompt, .greedy, maxTokens: 2))
            #expect(again.tokens.count == 2)
        }

        @Test("a transfer for a request nobody opened, or with another prompt length, is refused")
        func unknownTransferIsRefused() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let response = try await pair.submitPrefill(pair.prefillRequest("ghost", prompt: prompt))
            #expect(response.status == 502)
            #expect(errorCode(response.body) == "transfer_failed")
            #expect(response.bodyText.contains("request ghost was not opened here for KV"))

            let stream = try await pair.openDecode(pair.openRequest(HandoffFixture.state("short", prompt, .greedy, maxTokens: 8)))
            var events = stream.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.requestID == "short")
            let shorter = try await pair.submitPrefill(pair.prefillRequest("short", prompt: Array(prompt.dropLast())))
            #expect(shorter.status == 502)
            #expect(shorter.bodyText.contains("was opened with \(prompt.count) prompt tokens"))
            stream.cancel()
            let blocks = pair.prefill.kvBlocks
            #expect(blocks.free == blocks.total)
            #expect(try await allFree(pair.scheduler))
        }

        @Test("a missing transfer times out and frees its reservation; with the queue full a request gets NO_ROOM")
        func missingTransferTimesOut() async throws {
            // 24 blocks of 16 tokens: one request of prompt + 150 tokens (13 blocks) fits, two do not; none may wait.
            let pair = try await WorkerPair(kvBlocks: 24, maxQueued: 0)
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let waiting = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("late", prompt, .greedy, maxTokens: 150), transferTimeoutMs: 400))
            var events = waiting.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.requestID == "late")
            #expect(pair.scheduler.load.uncommittedBlocks == 24 - 13)

            let crowded = try await pair.run(HandoffFixture.state("crowded", prompt, .greedy, maxTokens: 150))
            #expect(!crowded.opened)
            #expect(crowded.failure?.code == .noRoom)

            let last = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(last.failure.code == .timeout)
            #expect(try await events.next() == nil)
            let load = pair.scheduler.load
            #expect(load.freeBlocks == 24 && load.uncommittedBlocks == 24 && load.waiting == 0)
        }

        @Test("a request that does not fit yet waits for room, with keep-alives, and then runs")
        func waitsForRoom() async throws {
            let pair = try await WorkerPair(kvBlocks: 24)
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let firstState = HandoffFixture.state("first", prompt, .greedy, maxTokens: 150)
            let secondState = HandoffFixture.state("second", prompt, .greedy, maxTokens: 150)
            async let first = pair.run(firstState)
            try await eventually("the first holds its room") { pair.scheduler.load.uncommittedBlocks == 24 - 13 }
            async let second = pair.run(secondState)
            try await eventually("the second waits") { pair.scheduler.load.waiting >= 1 }
            let (a, b) = try await (first, second)
            #expect(a.tokens == (try await pair.fixture.referenceTokens(firstState)))
            #expect(b.opened && b.failure == nil)
            #expect(b.tokens == a.tokens, "the same prompt, greedy")
        }

        @Test("a prompt queued behind another waits without spending its deadline; its queue bound still ends the wait")
        func queuedPromptKeepsItsDeadline() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let base = pair.fixture.prompt
            // Three different ~240-token prompts (different, so no prefix is cached) and a short one.
            func long(_ shift: Int) -> [Int32] {
                Array((0..<6).flatMap { _ in base }.map { ($0 + Int32(shift)) % 20_000 }.prefix(240))
            }
            let short = Array(base.prefix(8))

            /// Opens `id` on the decode worker and submits its prefill with the given bounds once `after` is computing.
            func submit(
                _ id: String, _ prompt: [Int32], deadlineMs: UInt32 = 0, queueTimeoutMs: UInt32 = 0, behindOther: Bool = false
            ) async throws -> (NodeStreamResponse, NodeResponse) {
                let stream = try await pair.openDecode(pair.openRequest(HandoffFixture.state(id, prompt, .greedy, maxTokens: 1)))
                var events = stream.messages.makeAsyncIterator()
                _ = try await events.next()  // opened
                var request = pair.prefillRequest(id, prompt: prompt)
                request.deadlineMs = deadlineMs
                request.queueTimeoutMs = queueTimeoutMs
                return (stream, try await pair.submitPrefill(request))
            }
            /// Starts a long prompt's prefill and returns once its pass runs (the short one then waits for the lane).
            func occupyLane(_ id: String, _ prompt: [Int32]) async throws -> Task<(NodeStreamResponse, NodeResponse), any Error> {
                let task = Task { try await submit(id, prompt) }
                let deadline = ContinuousClock.now + .seconds(30)
                while pair.prefill.shipper.computing == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
                #expect(pair.prefill.shipper.computing > 0, "the long prompt never started")
                return task
            }

            // How long a long prompt's prefill takes alone on this machine, now.
            let (firstStream, alone) = try await submit("alone", long(1))
            firstStream.cancel()
            try #require(alone.status == 200, "\(alone.bodyText)")
            let longMs = try Baton_V1_SubmitPrefillResponse(serializedBytes: alone.body).prefillMs

            // Behind a long prompt, a short one waits about that long: half of it as its deadline would have failed
            // it when the deadline counted the wait; it covers the short prompt's own pass many times over.
            let blocker = try await occupyLane("blocker", long(2))
            let (waitedStream, waited) = try await submit("waited", short, deadlineMs: max(1, longMs / 2), queueTimeoutMs: 60_000)
            waitedStream.cancel()
            try #require(waited.status == 200, "\(waited.bodyText)")
            let waitedResult = try Baton_V1_SubmitPrefillResponse(serializedBytes: waited.body)
            // prefill_ms runs from arrival (the wait included): the case tests something only if it waited past the deadline.
            #expect(waitedResult.prefillMs > longMs / 2, "the short prompt did not wait behind the long one (\(waitedResult.prefillMs) ms)")
            let (blockerStream, blocked) = try await blocker.value
            blockerStream.cancel()
            #expect(blocked.status == 200)

            // A queue bound shorter than the pass ahead of it ends the wait with its own message.
            let second = try await occupyLane("second", long(3))
            let (lateStream, late) = try await submit("late", short, deadlineMs: 60_000, queueTimeoutMs: 1)
            lateStream.cancel()
            #expect(late.status == 504)
            #expect(late.bodyText.contains("in the prefill queue without starting"), "\(late.bodyText)")
            let (secondStream, _) = try await second.value
            secondStream.cancel()
            let blocks = pair.prefill.kvBlocks
            #expect(blocks.free == blocks.total)
        }

        @Test("a draining worker refuses new work and finishes what it started")
        func drainingFinishesOldWork() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let state = HandoffFixture.state("old", prompt, .greedy, maxTokens: 24)
            let expected = try await pair.fixture.referenceTokens(state)
            let stream = try await pair.openDecode(pair.openRequest(state))
            var events = stream.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.worker == "decode-0")
            let prefill = Task { try await pair.submitPrefill(pair.prefillRequest("old", prompt: prompt)) }
            #expect(try await prefill.value.status == 200)

            pair.decodeService.startDraining()
            pair.prefillService.startDraining()
            let refused = try await pair.openDecode(pair.openRequest(HandoffFixture.state("new", prompt, .greedy, maxTokens: 4)))
            #expect(refused.status == 503)
            #expect(errorCode(refused.body) == "draining")
            let refusedPrefill = try await pair.submitPrefill(pair.prefillRequest("new", prompt: prompt))
            #expect(refusedPrefill.status == 503)
            let health = try await pair.decodeClient.call(BatonProtocol.WorkerControl.health, method: "GET", timeout: .seconds(5))
            #expect(health.status == 503)

            var tokens: [Int32] = []
            var finished: Baton_V1_DecodeFinished?
            while let bytes = try await events.next() {
                let event = try Baton_V1_DecodeEvent(serializedBytes: bytes)
                if case .token(let token) = event.event { tokens.append(token.token) }
                if case .finished(let end) = event.event { finished = end }
            }
            #expect(tokens == expected)
            #expect(finished?.completionTokens == UInt32(expected.count))
            #expect(await pair.decodeService.waitUntilIdle(timeout: .seconds(5)))
        }

        @Test("bad requests are refused before any work with a JSON code naming the field")
        func invalidRequestsAreRefused() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            var tooHot = HandoffFixture.state("hot", pair.fixture.prompt, .greedy, maxTokens: 4)
            tooHot.request.sampling.temperature = 3
            let hot = try await pair.openDecode(pair.openRequest(tooHot))
            #expect(hot.status == 400)
            #expect(errorCode(hot.body) == "invalid_argument")
            #expect(String(decoding: hot.body, as: UTF8.self).contains("temperature"))
            var unseeded = HandoffFixture.state("seedless", pair.fixture.prompt, .greedy, maxTokens: 4)
            unseeded.request.sampling.seed = nil
            let seedless = try await pair.openDecode(pair.openRequest(unseeded))
            #expect(seedless.status == 400)
            let hoard = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("hoard", pair.fixture.prompt, .greedy, maxTokens: 4), transferTimeoutMs: .max))
            #expect(hoard.status == 400)
            #expect(String(decoding: hoard.body, as: UTF8.self).contains("transfer_timeout_ms"))
            let overflow = try await pair.openDecode(
                pair.openRequest(HandoffFixture.state("overflow", pair.fixture.prompt, .greedy, maxTokens: HandoffFixture.context)))
            #expect(overflow.status == 400)
            #expect(String(decoding: overflow.body, as: UTF8.self).contains("maximum context length"))
            let long = [Int32](repeating: 1, count: HandoffFixture.context)
            let tooLong = try await pair.submitPrefill(pair.prefillRequest("long", prompt: long))
            #expect(tooLong.status == 400)
            let wrongRole = try await pair.prefillClient.stream(
                BatonProtocol.WorkerControl.openDecode,
                body: try pair.openRequest(HandoffFixture.state("x", [1], .greedy, maxTokens: 1)).serializedBytes(),
                idleTimeout: .seconds(5))
            #expect(wrongRole.status == 404)
            #expect(errorCode(wrongRole.body) == "wrong_role")
        }

        @Test(
            "a generation's state taken after k tokens continues on another decode worker with exactly the undisturbed tokens",
            arguments: [(Float(0), 3), (0.8, 1), (0.8, 7)])
        func resumeOnAnotherWorker(temperature: Float, k: Int) async throws {
            let first = try await WorkerPair(sharedMemory: false)
            defer { Task { await first.close() } }
            let prompt = first.fixture.prompt
            var sampling = Self.seeded
            sampling.temperature = temperature
            let state = HandoffFixture.state("moving", prompt, sampling, maxTokens: 20)
            let undisturbed = try await first.fixture.referenceTokens(state)

            // k tokens on the first decode worker, then its stream breaks: the router keeps the state.
            let partial = try await first.run(state, stopAfter: k)
            var taken = state
            for token in partial.generated { taken.append(token) }
            #expect(taken.generated == Array(undisturbed.prefix(k)))
            // The state crosses the wire as one message.
            let wire: [UInt8] = try taken.proto.serializedBytes()
            let carried = GenerationState(proto: try Baton_V1_GenerationState(serializedBytes: wire))
            #expect(carried == taken)

            // A second pair: its prefill worker ships the prompt's KV, its decode worker replays the generated tokens.
            let second = try await WorkerPair(sharedMemory: false)
            defer { Task { await second.close() } }
            let rest = try await second.run(carried)
            #expect(rest.failure == nil)
            #expect(taken.generated + rest.tokens == undisturbed)
            #expect(rest.finished?.completionTokens == 20)
            // And with the prompt run on the decode worker itself (role both).
            let here = try await WorkerPair(decodeRoles: [.decode, .prefill])
            defer { Task { await here.close() } }
            #expect(taken.generated + (try await here.run(carried, prefillHere: true)).tokens == undisturbed)
        }

        @Test("a generation state and its sampling parameters survive the wire; unset fields mean their defaults")
        func stateRoundTrip() throws {
            let parameters = SamplingParameters(
                temperature: 0.7, topK: 20, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, frequencyPenalty: 0.5,
                presencePenalty: -0.5, penaltyLastN: 0, logitBias: [5: -3], seed: 99, logprobs: 0)
            #expect(SamplingParameters(proto: parameters.proto) == parameters)
            var plain = SamplingParameters()
            #expect(SamplingParameters(proto: plain.proto) == plain)
            plain.seed = 0
            #expect(SamplingParameters(proto: plain.proto).seed == 0, "a zero seed is a seed")
            let empty = SamplingParameters(proto: Baton_V1_SamplingParameters())
            #expect(empty.topP == 1 && empty.repetitionPenalty == 1 && empty.penaltyLastN == 64 && empty.seed == nil && empty.logprobs == nil)
            let state = GenerationState(
                request: GenerationRequest(id: "r", prompt: [1, 2, 3], maxNewTokens: 9, sampling: parameters, stopTokenIDs: [7, 4]),
                generated: [5, 6], random: RandomState(1, 2, 3, 4))
            #expect(GenerationState(proto: state.proto) == state)
            var bad = Baton_V1_SamplingParameters()
            bad.logitBias = [500: 1]
            bad.seed = 1
            let invalid = GenerationState(
                request: GenerationRequest(id: "r", prompt: [1], maxNewTokens: 1, sampling: SamplingParameters(proto: bad)))
            #expect(throws: GenerationError.self) { _ = try invalid.validated(vocabularySize: 100, contextLength: 16) }
        }
    }
}
