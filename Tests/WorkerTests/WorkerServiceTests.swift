import ClusterProtocol
import Foundation
import Inference
import KVTransport
import Synchronization
import Testing
import Worker

extension SharedFixtureSuites {
    @Suite("Worker service", .serialized)
    struct WorkerServiceTests {
        static let seeded = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, seed: 1234)

        /// Single-process generation of `prompt` (prefill path), the reference the cluster must equal.
        func reference(_ fixture: HandoffFixture, _ prompt: [Int32], _ parameters: SamplingParameters, maxTokens: Int) throws -> [Int32] {
            var parameters = parameters
            parameters.maxTokens = maxTokens
            return try fixture.reference.generate(prompt: prompt, parameters: parameters).tokens
        }

        @Test("a disaggregated request yields the tokens of single-process generation, greedy and seeded")
        func disaggregatedEqualsGenerator() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            for (name, parameters) in [("greedy", SamplingParameters.greedy), ("seeded", Self.seeded)] {
                let expected = try reference(pair.fixture, prompt, parameters, maxTokens: 16)
                let outcome = try await pair.run("solo-\(name)", prompt: prompt, parameters: parameters, maxNewTokens: 16)
                #expect(outcome.opened)
                #expect(outcome.failure == nil, "\(outcome.failure.map { "\($0.code): \($0.message)" } ?? "")")
                #expect(outcome.tokens == expected, "\(name)")
                let finished = try #require(outcome.finished)
                #expect(finished.promptTokens == UInt32(prompt.count))
                #expect(finished.transport == .sharedMemory)
                #expect(finished.kvBytes > 0)
                let prefill = try #require(outcome.prefill)
                #expect(prefill.firstToken == expected.first)
                #expect(prefill.transport == .sharedMemory)
                #expect(prefill.kvBytesSent == finished.kvBytes)
            }
            #expect(pair.scheduler.load.freeBlocks == pair.scheduler.load.totalBlocks)
        }

        @Test("two concurrent requests are batched together and each equals its solo run")
        func concurrentRequestsBatch() async throws {
            let pair = try await WorkerPair(sharedMemory: false)
            defer { Task { await pair.close() } }
            let fixture = pair.fixture
            let other = fixture.tokenizer.encode("The three rules of the old lighthouse keeper were simple, and every child knew them by heart:")
            let expectedA = try reference(fixture, fixture.prompt, .greedy, maxTokens: 40)
            let expectedB = try reference(fixture, other, Self.seeded, maxTokens: 40)
            async let a = pair.run("batch-a", prompt: fixture.prompt, parameters: .greedy, maxNewTokens: 40)
            async let b = pair.run("batch-b", prompt: other, parameters: Self.seeded, maxNewTokens: 40)
            let (outcomeA, outcomeB) = try await (a, b)
            #expect(outcomeA.tokens == expectedA)
            #expect(outcomeB.tokens == expectedB)
            #expect(outcomeA.finished?.transport == .tlsHTTP2)
            #expect(pair.scheduler.load.largestBatch >= 2)
        }

        @Test("a decode worker running the prompt itself equals single-process generation on either path")
        func prefillHereEqualsGenerator() async throws {
            let fixture = try HandoffFixture.get()
            // Decode-only: the prompt goes through the decode engine, as `Generator` without a prefill engine does.
            let cache = try PagedKVCache(layout: fixture.model.kvCacheLayout(), blockCount: 32)
            let engine = try DecodeEngine(model: fixture.model, cache: cache, threads: 2, maxBatch: 8, maxContext: HandoffFixture.context)
            let ingestReference = try Generator(tokenizer: fixture.tokenizer, prefill: nil, decode: engine)
            var parameters = Self.seeded
            parameters.maxTokens = 12
            let expectedIngest = try ingestReference.generate(prompt: fixture.prompt, parameters: parameters).tokens

            let decodeOnly = try await WorkerPair()
            let ingested = try await decodeOnly.run("here-decode", prompt: fixture.prompt, parameters: Self.seeded, maxNewTokens: 12, prefillHere: true)
            await decodeOnly.close()
            #expect(ingested.tokens == expectedIngest)
            #expect(ingested.finished?.reason == .maxTokens)
            #expect(ingested.finished?.transport == .unspecified)

            let both = try await WorkerPair(prefillEngine: true)
            let prefilled = try await both.run("here-both", prompt: fixture.prompt, parameters: Self.seeded, maxNewTokens: 12, prefillHere: true)
            await both.close()
            #expect(prefilled.tokens == (try reference(fixture, fixture.prompt, Self.seeded, maxTokens: 12)))
        }

        @Test("cancelling the OpenDecode stream frees every block on both workers")
        func cancellingFreesBothSides() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let stream = try await pair.openDecode(pair.openRequest("cancel-me", prompt: prompt, parameters: .greedy, maxNewTokens: 200))
            #expect(stream.status == 200)
            let tokens = Mutex(0)
            let consumer = Task {
                for try await bytes in stream.messages {
                    let event = try Baton_V1_DecodeEvent(serializedBytes: bytes)
                    if case .opened = event.event {
                        let response = try await pair.submitPrefill(pair.prefillRequest("cancel-me", prompt: prompt, parameters: .greedy))
                        #expect(response.status == 200)
                    }
                    if case .token = event.event { tokens.withLock { $0 += 1 } }
                }
            }
            try await pair.eventually("three tokens arrive") { tokens.withLock { $0 } >= 3 }
            // The router's way to give up: cancel the task reading the stream, which resets it.
            consumer.cancel()
            _ = await consumer.result
            try await pair.eventually("the decode worker frees the request") {
                let load = pair.scheduler.load
                return load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks && load.active == 0
            }
            let load = pair.scheduler.load
            #expect(load.cancelled == 1 && load.finished == 0, "the request ended by cancellation, not by itself")
            #expect(tokens.withLock { $0 } < 200)
            let prefillCache = pair.fixture.prefillCache
            #expect(prefillCache.freeBlockCount == prefillCache.blockCount)
            // The id is free again: a new request under it runs.
            let again = try await pair.run("cancel-me", prompt: prompt, parameters: .greedy, maxNewTokens: 2)
            #expect(again.tokens.count == 2)
        }

        @Test("a transfer for a request nobody opened is refused")
        func unknownTransferIsRefused() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let response = try await pair.submitPrefill(pair.prefillRequest("ghost", prompt: pair.fixture.prompt, parameters: .greedy))
            #expect(response.status == 502)
            #expect(errorCode(response.body) == "transfer_failed")
            #expect(response.bodyText.contains("no OpenDecode is waiting for request ghost"))
            let prefillCache = pair.fixture.prefillCache
            #expect(prefillCache.freeBlockCount == prefillCache.blockCount)
            #expect(pair.scheduler.load.freeBlocks == pair.scheduler.load.totalBlocks)
        }

        @Test("a prefill that sampled with other parameters than OpenDecode gave fails the request and frees it")
        func mismatchedParametersFail() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let stream = try await pair.openDecode(pair.openRequest("mismatch", prompt: prompt, parameters: .greedy, maxNewTokens: 8))
            var events = stream.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.requestID == "mismatch")
            let response = try await pair.submitPrefill(pair.prefillRequest("mismatch", prompt: prompt, parameters: Self.seeded))
            #expect(response.status == 502)
            let last = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(last.failure.code == .transferFailed)
            #expect(last.failure.message.contains("other parameters"))
            try await pair.eventually("the reservation is freed") {
                let load = pair.scheduler.load
                return load.freeBlocks == load.totalBlocks && load.uncommittedBlocks == load.totalBlocks
            }
        }

        @Test("a missing transfer times out and frees its reservation; a request that cannot fit is refused with NO_ROOM")
        func missingTransferTimesOut() async throws {
            // 24 blocks of 16 tokens: one request of prompt + 150 tokens (13 blocks) fits, two do not.
            let pair = try await WorkerPair(kvBlocks: 24)
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let waiting = try await pair.openDecode(
                pair.openRequest("late", prompt: prompt, parameters: .greedy, maxNewTokens: 150, transferTimeoutMs: 400))
            var events = waiting.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.requestID == "late")
            #expect(pair.scheduler.load.uncommittedBlocks == 24 - 13)

            let crowded = try await pair.run("crowded", prompt: prompt, parameters: .greedy, maxNewTokens: 150)
            #expect(!crowded.opened)
            #expect(crowded.failure?.code == .noRoom)

            let last = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(last.failure.code == .timeout)
            #expect(try await events.next() == nil)
            let load = pair.scheduler.load
            #expect(load.freeBlocks == 24 && load.uncommittedBlocks == 24 && load.waiting == 0)
        }

        @Test("a draining worker refuses new work and finishes what it started")
        func drainingFinishesOldWork() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            let prompt = pair.fixture.prompt
            let expected = try reference(pair.fixture, prompt, .greedy, maxTokens: 24)
            let stream = try await pair.openDecode(pair.openRequest("old", prompt: prompt, parameters: .greedy, maxNewTokens: 24))
            var events = stream.messages.makeAsyncIterator()
            let opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await events.next()))
            #expect(opened.opened.worker == "decode-0")
            let prefill = Task { try await pair.submitPrefill(pair.prefillRequest("old", prompt: prompt, parameters: .greedy)) }
            #expect(try await prefill.value.status == 200)

            pair.decodeService.startDraining()
            pair.prefillService.startDraining()
            let refused = try await pair.openDecode(pair.openRequest("new", prompt: prompt, parameters: .greedy, maxNewTokens: 4))
            #expect(refused.status == 503)
            #expect(errorCode(refused.body) == "draining")
            let refusedPrefill = try await pair.submitPrefill(pair.prefillRequest("new", prompt: prompt, parameters: .greedy))
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

        @Test("bad requests are refused before any work with a JSON code")
        func invalidRequestsAreRefused() async throws {
            let pair = try await WorkerPair()
            defer { Task { await pair.close() } }
            var tooHot = SamplingParameters.greedy
            tooHot.temperature = 3
            let hot = try await pair.openDecode(pair.openRequest("hot", prompt: pair.fixture.prompt, parameters: tooHot, maxNewTokens: 4))
            #expect(hot.status == 400)
            #expect(errorCode(hot.body) == "invalid_argument")
            #expect(String(decoding: hot.body, as: UTF8.self).contains("temperature"))
            let long = [Int32](repeating: 1, count: HandoffFixture.context)
            let tooLong = try await pair.submitPrefill(pair.prefillRequest("long", prompt: long, parameters: .greedy))
            #expect(tooLong.status == 400)
            let wrongRole = try await pair.prefillClient.stream(
                BatonProtocol.WorkerControl.openDecode,
                body: try pair.openRequest("x", prompt: [1], parameters: .greedy, maxNewTokens: 1).serializedBytes(),
                idleTimeout: .seconds(5))
            #expect(wrongRole.status == 404)
            #expect(errorCode(wrongRole.body) == "wrong_role")
        }

        @Test("sampling parameters survive the wire and zero means off where zero is not a value")
        func samplingParametersRoundTrip() throws {
            var parameters = SamplingParameters(
                temperature: 0.7, topK: 20, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, frequencyPenalty: 0.5,
                presencePenalty: -0.5, logitBias: [5: -3], seed: 99, logprobs: 3)
            #expect(try SamplingParameters(proto: parameters.proto, vocabularySize: 100) == parameters)
            parameters.seed = nil
            parameters.logprobs = nil
            #expect(try SamplingParameters(proto: parameters.proto, vocabularySize: 100) == parameters)
            let empty = try SamplingParameters(proto: Baton_V1_SamplingParameters(), vocabularySize: 100)
            #expect(empty.topP == 1 && empty.repetitionPenalty == 1 && empty.temperature == 0 && empty.seed == nil)
            var bad = Baton_V1_SamplingParameters()
            bad.logitBias = [500: 1]
            #expect(throws: WorkerError.self) { try SamplingParameters(proto: bad, vocabularySize: 100) }
        }
    }
}
