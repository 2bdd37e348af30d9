import Foundation
import Generation
import Inference
import KVTransport
import Testing
import Worker

extension SharedFixtureSuites {
    /// A decode worker that holds a prompt's prefix in its cache receives only the rest: the prefill worker computes
    /// the whole prompt (from its own cache or not) and ships the blocks after the held ones. Real engines, the
    /// in-process twin of the transport; passes of 32 tokens on both sides, so the prompts stay short.
    @Suite("Only missing blocks travel", .serialized)
    struct MissingBlocksTests {
        static let pass = 32

        let fixture: HandoffFixture
        /// A 70-token prompt, and one of 84 that shares its first 64 (two whole passes) and then parts.
        let first: [Int32]
        let second: [Int32]

        init() throws {
            fixture = try HandoffFixture.get()
            let text = fixture.prompt
            first = Array((text + text + text).prefix(70))
            second = Array(first.prefix(64)) + Array(text.suffix(20))
        }

        /// A prefill worker with a fresh cache of its own and short passes of `pass` tokens (a prompt spans several).
        func shipper(prefixCaching: Bool = true) throws -> PrefillKVShipper {
            let cache = try PagedKVCache(layout: fixture.prefillCache.layout, blockCount: fixture.prefillCache.blockCount)
            let engine = try PrefillEngine(
                model: fixture.model, cache: cache, threads: 2, chunkSize: Self.pass, maxContext: HandoffFixture.context,
                weights: fixture.prefill.weights)
            return try PrefillKVShipper(
                engine: engine, identity: fixture.identity, prefixCaching: prefixCaching)
        }

        /// As the router does: opens `state` on `decode`, asks it which prefix it holds, has the prefill worker ship
        /// from there, and collects the tokens.
        func run(
            _ state: GenerationState, decode: (scheduler: DecodeScheduler, receiver: SchedulerKVReceiver), shipper: PrefillKVShipper
        ) async throws -> (tokens: [GeneratedToken], summary: GenerationSummary, report: KVShipmentReport) {
            let stream = try await decode.scheduler.open(state, prompt: .transfer(timeout: .seconds(20)))
            let holds = try #require(decode.scheduler.transferStart(requestID: state.request.id))
            let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: decode.receiver)
            let report = try await shipper.ship(
                requestID: state.request.id, prompt: state.request.prompt, receiverHolds: holds, via: transport)
            let (tokens, summary) = try await collect(stream)
            return (tokens, summary, report)
        }

        /// Bytes of every layer of `tokens` tokens from position `from` on.
        func bytes(_ tokens: Int, from: Int = 0) -> Int {
            fixture.identity.layerByteCount(tokenCount: tokens, from: from) * fixture.identity.layers
        }

        static let samplings: [(String, SamplingParameters)] = [
            ("greedy", SamplingParameters(temperature: 0, seed: 0, logprobs: 3)),
            ("seeded", SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 1234, logprobs: 2)),
        ]

        @Test(
            "a second prompt sharing a long prefix ships only the blocks the decode worker lacks, and decodes to the cold run's tokens",
            arguments: [0, 1])
        func sharedPrefixShipsTheRest(_ index: Int) async throws {
            let (name, sampling) = Self.samplings[index]
            // Cold: neither side caches anything.
            let coldDecode = try fixture.decodeWorker(prefixCaching: false)
            defer { coldDecode.scheduler.shutdown() }
            let cold = try await run(
                HandoffFixture.state("cold-\(name)", second, sampling, maxTokens: 8), decode: coldDecode,
                shipper: try shipper(prefixCaching: false))
            #expect(cold.report.transfer.bytes == bytes(second.count) && cold.report.bytesNotSent == 0)

            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let prefill = try shipper()
            // A decode worker that holds nothing is sent everything.
            let opening = try await run(HandoffFixture.state("first-\(name)", first, sampling, maxTokens: 4), decode: decode, shipper: prefill)
            #expect(opening.report.receiverCachedTokens == 0 && opening.report.transfer.bytes == bytes(first.count))
            #expect(opening.summary.handoff?.cachedTokens == 0 && opening.summary.handoff?.bytesNotShipped == 0)

            // Now it holds the first prompt's two whole passes: only the blocks after them travel.
            let warm = try await run(HandoffFixture.state("second-\(name)", second, sampling, maxTokens: 8), decode: decode, shipper: prefill)
            #expect(warm.report.receiverCachedTokens == 64)
            #expect(warm.report.transfer.bytes == bytes(second.count, from: 64), "\(warm.report.transfer.bytes) bytes sent")
            #expect(warm.report.bytesNotSent == bytes(second.count) - bytes(second.count, from: 64))
            #expect(warm.summary.handoff?.cachedTokens == 64)
            #expect(warm.summary.handoff?.bytes == warm.report.transfer.bytes)
            #expect(warm.summary.handoff?.bytesNotShipped == warm.report.bytesNotSent)
            #expect(warm.tokens == cold.tokens, "\(name): tokens, log-probabilities and generator states")

            // A prefill worker that caches nothing computes the whole prompt and still ships only the rest.
            let again = try await run(
                HandoffFixture.state("again-\(name)", second, sampling, maxTokens: 8), decode: decode,
                shipper: try shipper(prefixCaching: false))
            #expect(again.report.receiverCachedTokens == 64 && again.report.transfer.bytes == bytes(second.count, from: 64))
            #expect(again.tokens == cold.tokens, "\(name), from a cold prefill worker")

            let load = decode.scheduler.load
            #expect(load.kvBytesReceived == opening.report.transfer.bytes + warm.report.transfer.bytes + again.report.transfer.bytes)
            #expect(load.kvBytesNotShipped == warm.report.bytesNotSent + again.report.bytesNotSent)
            #expect(load.cachedPromptTokens == 128 && load.promptTokens == first.count + 2 * second.count)
            #expect(try await allFree(decode.scheduler), "held blocks go back to the cache when the generations end")
        }

        @Test("a generation moved to a decode worker that holds its prompt's prefix continues with the undisturbed run's tokens")
        func resumedOntoACachedPrefix() async throws {
            let (_, sampling) = Self.samplings[1]
            let state = HandoffFixture.state("moving", second, sampling, maxTokens: 10)
            let coldDecode = try fixture.decodeWorker(prefixCaching: false)
            defer { coldDecode.scheduler.shutdown() }
            let undisturbed = try await run(state, decode: coldDecode, shipper: try shipper(prefixCaching: false)).tokens

            // The router kept the state after 4 tokens; the decode worker it moves to holds 64 prompt positions.
            var moved = state
            for token in undisturbed.prefix(4) { moved.append(token) }
            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let prefill = try shipper()
            _ = try await run(HandoffFixture.state("warm", first, .greedy, maxTokens: 2), decode: decode, shipper: prefill)
            let rest = try await run(moved, decode: decode, shipper: prefill)
            #expect(rest.report.receiverCachedTokens == 64 && rest.report.transfer.bytes == bytes(second.count, from: 64))
            #expect(Array(undisturbed.prefix(4)) + rest.tokens == undisturbed, "tokens and generator states")
        }

        @Test("a transfer that does not start where the decode worker's cached prefix ends is refused, and frees both sides")
        func mismatchedClaimsAreRefused() async throws {
            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let prefill = try shipper()
            _ = try await run(HandoffFixture.state("seed", first, .greedy, maxTokens: 2), decode: decode, shipper: prefill)

            // It holds 64 positions of `second`: a sender starting at 0 (resending them) or at 32 is refused.
            for (attempt, claim) in [0, 32].enumerated() {
                let state = HandoffFixture.state("claim-\(attempt)", second, .greedy, maxTokens: 2)
                let stream = try await decode.scheduler.open(state, prompt: .transfer(timeout: .seconds(20)))
                #expect(decode.scheduler.transferStart(requestID: state.request.id) == 64)
                let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: decode.receiver)
                await #expect {
                    _ = try await prefill.ship(requestID: state.request.id, prompt: second, receiverHolds: claim, via: transport)
                } throws: { error in
                    guard let error = error as? WorkerError, error.code == .transfer else { return false }
                    return "\(error)".contains("holds the KV of the prompt's first 64 positions, so its transfer must start at position 64; this one starts at \(claim)")
                }
                stream.cancel(reason: "test")
            }
            // A decode worker that holds nothing refuses a transfer that skips positions.
            let fresh = try fixture.decodeWorker()
            defer { fresh.scheduler.shutdown() }
            let state = HandoffFixture.state("skips", second, .greedy, maxTokens: 2)
            let stream = try await fresh.scheduler.open(state, prompt: .transfer(timeout: .seconds(20)))
            let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: fresh.receiver)
            await #expect(throws: WorkerError.self) {
                _ = try await prefill.ship(requestID: state.request.id, prompt: second, receiverHolds: 64, via: transport)
            }
            // As the router does when the prefill fails: the decode side's reservation is cancelled.
            stream.cancel(reason: "the prefill failed")
            await #expect(throws: GenerationError.self) { _ = try await collect(stream) }

            // Positions that cannot start a transfer are refused before anything is computed or sent.
            for claim in [5, second.count, -16] {
                await #expect {
                    _ = try await prefill.ship(requestID: "bad-\(claim)", prompt: second, receiverHolds: claim, via: transport)
                } throws: { error in
                    guard let error = error as? WorkerError, error.code == .invalidArgument else { return false }
                    return "\(error)".contains("must be a multiple of the block size")
                }
            }
            #expect(try await allFree(decode.scheduler))
            #expect(try await allFree(fresh.scheduler))
            #expect(prefill.admitted == 0 && prefill.reservedBlocks == 0)
            #expect(prefill.engine.cache.sequenceCount == 0, "the prefill side frees every sequence")
        }
    }
}
