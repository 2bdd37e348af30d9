import RPC
import Foundation
import Generation
import Inference
import KVTransport
import Testing
import Worker

extension SharedFixtureSuites {
    /// Prefill in one engine, layer-streamed over the in-memory transport twin into a decode scheduler's reserved
    /// blocks, decode there: the same tokens as one process, and nothing left behind when a transfer fails.
    @Suite("Prefill shipper and decode receive path in one process", .serialized)
    struct PrefillKVShipperTests {
        static let parameterSets: [(String, SamplingParameters)] = [
            ("greedy", SamplingParameters(temperature: 0, seed: 1)),
            ("seeded sampling", SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, minP: 0.05, repetitionPenalty: 1.1, seed: 1234)),
            ("dense sampling", SamplingParameters(temperature: 1.2, topK: 0, topP: 1, minP: 0, seed: 99, logprobs: 2)),
        ]

        /// Opens `state` on `decode` to wait for its KV, ships the prompt through `sender`, and collects the tokens.
        static func splitRun(
            _ state: GenerationState, decode: DecodeScheduler, shipper: PrefillKVShipper, via sender: any KVTransferSender
        ) async throws -> (tokens: [GeneratedToken], summary: GenerationSummary, report: KVShipmentReport) {
            let stream = try await decode.open(state, prompt: .transfer(timeout: .seconds(20)))
            let report = try await shipper.ship(requestID: state.request.id, prompt: state.request.prompt, via: sender)
            let (tokens, summary) = try await collect(stream)
            return (tokens, summary, report)
        }

        @Test("a shipped sequence decodes to the tokens of single-process generation", arguments: [0, 1, 2])
        func matchesSingleProcess(_ index: Int) async throws {
            let fixture = try HandoffFixture.get()
            let (name, parameters) = Self.parameterSets[index]
            let state = HandoffFixture.state("r-\(name)", fixture.prompt, parameters, maxTokens: 12)
            let expected = try await collect(try await fixture.reference.generate(state)).tokens

            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity, maxBufferedLayers: 2)
            let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: decode.receiver)
            let (tokens, summary, report) = try await Self.splitRun(state, decode: decode.scheduler, shipper: shipper, via: transport)
            #expect(report.transfer.bytes == fixture.identity.layerByteCount(tokenCount: fixture.prompt.count) * fixture.identity.layers)
            #expect(tokens == expected, "\(name): tokens, log-probabilities and generator states")
            #expect(summary.reason == .maxTokens)
            #expect(summary.handoff?.bytes == report.transfer.bytes)
            #expect(try await allFree(decode.scheduler), "the decoded sequence is freed")
            #expect(fixture.prefillCache.sequenceCount == 0, "the prefill side frees its sequence")
        }

        /// Greedy with log-probabilities: the tokens carry the logits' values, so equal tokens mean equal logits.
        static let greedyWithLogprobs = SamplingParameters(temperature: 0, seed: 0, logprobs: 3)

        @Test("shipments that arrive while a pass runs share the next pass, and each decodes as if alone, bit for bit")
        func concurrentShipmentsShareAPass() async throws {
            let fixture = try HandoffFixture.get()
            let prompt = fixture.prompt
            let prompts = [prompt, Array(prompt[..<20]), Array(prompt.suffix(30)), Array(prompt[5..<12])]
            let states = prompts.enumerated().map { HandoffFixture.state("r\($0)", $1, Self.greedyWithLogprobs, maxTokens: 6) }
            var expected: [[GeneratedToken]] = []
            for state in states { expected.append(try await collect(try await fixture.reference.generate(state)).tokens) }
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity, maxBufferedLayers: 1)
            let workers = try prompts.map { _ in try fixture.decodeWorker() }
            defer { for worker in workers { worker.scheduler.shutdown() } }
            // The first receiver takes 20 ms per layer; with one buffered layer the first pass lasts over half a
            // second, and the other three queue up behind it.
            let transports = workers.enumerated().map { i, worker in
                InMemoryKVTransport(
                    receiverIdentity: fixture.identity,
                    receiver: i == 0 ? TappedReceiver.slow(worker.receiver, delay: .milliseconds(20)) : worker.receiver)
            }
            let streams = try await withThrowingTaskGroup(of: (Int, GenerationStream).self) { group in
                for i in prompts.indices {
                    group.addTask { (i, try await workers[i].scheduler.open(states[i], prompt: .transfer(timeout: .seconds(20)))) }
                }
                var streams = [GenerationStream?](repeating: nil, count: prompts.count)
                for try await (i, stream) in group { streams[i] = stream }
                return streams.compactMap { $0 }
            }
            _ = try await withThrowingTaskGroup(of: (Int, KVShipmentReport).self) { group in
                group.addTask { (0, try await shipper.ship(requestID: "r0", prompt: prompts[0], via: transports[0])) }
                while shipper.admitted == 0 { try await Task.sleep(for: .milliseconds(2)) }
                for i in 1..<prompts.count {
                    group.addTask { (i, try await shipper.ship(requestID: "r\(i)", prompt: prompts[i], via: transports[i])) }
                }
                let deadline = ContinuousClock.now + .seconds(2)
                while shipper.waiting < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(2)) }
                #expect(shipper.waiting == 3 && shipper.computing == 1 && shipper.admitted == 1, "three wait behind the first")
                var reports: [KVShipmentReport] = []
                for try await (_, report) in group { reports.append(report) }
                return reports
            }
            // The fixture's engine may hold blocks of these prompts from earlier tests: those are not computed again.
            #expect(shipper.passes.tokens == prompts.reduce(0) { $0 + $1.count } - shipper.promptTokens.cached)
            #expect(shipper.passes.count == 2, "the first prompt alone, then the three that waited in one pass")
            for (i, stream) in streams.enumerated() {
                #expect(try await collect(stream).tokens == expected[i], "prompt \(i): tokens and log-probabilities, bit for bit")
            }
            #expect(fixture.prefillCache.sequenceCount == 0, "every batched sequence is freed")
            #expect(shipper.admitted == 0 && shipper.reservedBlocks == 0 && shipper.waiting == 0)
        }

        @Test("a prompt shipped again starts from its cached whole blocks, and decodes to the same bits")
        func prefixReuseOnThePrefillWorker() async throws {
            let fixture = try HandoffFixture.get()
            // Passes of 48 tokens: the second round reuses the prompt's 4 whole blocks of 16, past its first pass.
            let cache = try PagedKVCache(layout: fixture.prefillCache.layout, blockCount: fixture.prefillCache.blockCount)
            let engine = try PrefillEngine(model: fixture.model, cache: cache, threads: 2, chunkSize: 48, maxContext: HandoffFixture.context)
            let shipper = try PrefillKVShipper(engine: engine, identity: fixture.identity)
            let prompt = Array((fixture.prompt + fixture.prompt + fixture.prompt).prefix(70))
            var outcomes: [[GeneratedToken]] = []
            for round in 0..<2 {
                let decode = try fixture.decodeWorker()
                defer { decode.scheduler.shutdown() }
                let state = HandoffFixture.state("again-\(round)", prompt, Self.greedyWithLogprobs, maxTokens: 6)
                let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: decode.receiver)
                outcomes.append(try await Self.splitRun(state, decode: decode.scheduler, shipper: shipper, via: transport).tokens)
            }
            #expect(outcomes[1] == outcomes[0], "tokens and log-probabilities, bit for bit")
            #expect(shipper.promptTokens.all == 140 && shipper.promptTokens.cached == 64, "\(shipper.promptTokens)")
            #expect(shipper.passes.tokens == 70 + 6, "the second prompt ran only its last 6 tokens")
            #expect(cache.sequenceCount == 0 && cache.freeBlockCount == cache.blockCount)
        }

        @Test("a shipment cancelled while it waits behind another leaves the lane and frees nothing twice")
        func cancelledWhileQueued() async throws {
            let fixture = try HandoffFixture.get()
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity, maxBufferedLayers: 1)
            let slowWorker = try fixture.decodeWorker(), otherWorker = try fixture.decodeWorker()
            defer {
                slowWorker.scheduler.shutdown()
                otherWorker.scheduler.shutdown()
            }
            let slow = InMemoryKVTransport(
                receiverIdentity: fixture.identity, receiver: TappedReceiver.slow(slowWorker.receiver, delay: .milliseconds(20)))
            let other = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: otherWorker.receiver)
            let firstStream = try await slowWorker.scheduler.open(
                HandoffFixture.state("first", fixture.prompt, .greedy, maxTokens: 2), prompt: .transfer(timeout: .seconds(20)))
            _ = try await otherWorker.scheduler.open(
                HandoffFixture.state("queued", fixture.prompt, .greedy, maxTokens: 2), prompt: .transfer(timeout: .seconds(20)))
            let first = Task { try await shipper.ship(requestID: "first", prompt: fixture.prompt, via: slow) }
            while shipper.admitted == 0 { try await Task.sleep(for: .milliseconds(2)) }
            let queued = Task { try await shipper.ship(requestID: "queued", prompt: fixture.prompt, via: other) }
            while shipper.waiting == 0 { try await Task.sleep(for: .milliseconds(2)) }
            queued.cancel()
            await #expect(throws: WorkerError.self) { _ = try await queued.value }
            #expect(shipper.waiting == 0)
            _ = try await first.value
            #expect(try await collect(firstStream).tokens.count == 2)
            #expect(shipper.passes.count == 1, "the cancelled prompt never ran")
            #expect(fixture.prefillCache.sequenceCount == 0)
        }

        @Test("over mutual TLS, a prompt that waits longer than the receiver's idle timeout for its layers still arrives")
        func queuedLongerThanIdleTimeout() async throws {
            let fixture = try HandoffFixture.get()
            let authority = try ClusterCertificates.makeAuthority(name: "Baton test CA")
            func configuration(_ node: String, _ role: NodeRole) throws -> KVTransportConfiguration {
                try KVTransportConfiguration.tlsStreamConfiguration(
                    node: node, role: role, authority: authority, idleTimeout: .milliseconds(300))
            }
            let tlsWorker = try fixture.decodeWorker(), slowWorker = try fixture.decodeWorker()
            defer {
                tlsWorker.scheduler.shutdown()
                slowWorker.scheduler.shutdown()
            }
            let server = try await KVTransferServer.bind(
                host: "127.0.0.1", port: 0, configuration: try configuration("decode", .decode), identity: fixture.identity,
                receiver: tlsWorker.receiver)
            let serving = Task { await server.run() }
            let client = try await KVTransferClient.connect(
                host: "127.0.0.1", port: server.port, configuration: try configuration("prefill", .prefill))
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity, maxBufferedLayers: 1)
            // The first prompt's link takes a second to accept: with one layer buffered, the compute thread waits
            // for it, and the second prompt's layers come a second after it arrived.
            let slow = StallingSender(
                inner: InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: slowWorker.receiver), delay: .seconds(1))
            let firstStream = try await slowWorker.scheduler.open(
                HandoffFixture.state("first", fixture.prompt, .greedy, maxTokens: 2), prompt: .transfer(timeout: .seconds(20)))
            let secondStream = try await tlsWorker.scheduler.open(
                HandoffFixture.state("second", fixture.prompt, .greedy, maxTokens: 2), prompt: .transfer(timeout: .seconds(20)))
            let first = Task { try await shipper.ship(requestID: "first", prompt: fixture.prompt, via: slow) }
            while shipper.admitted == 0 { try await Task.sleep(for: .milliseconds(2)) }
            let started = ContinuousClock.now
            let second = try await shipper.ship(requestID: "second", prompt: fixture.prompt, via: client)
            #expect(started.duration(to: .now) > .milliseconds(900), "it waited three idle timeouts")
            #expect(second.transfer.bytes == fixture.identity.layerByteCount(tokenCount: fixture.prompt.count) * fixture.identity.layers)
            #expect(second.transfer.transport == .tlsHTTP2)
            _ = try await first.value
            #expect(try await collect(firstStream).tokens.count == 2)
            #expect(try await collect(secondStream).tokens.count == 2)
            await client.close()
            await server.close()
            serving.cancel()
        }

        @Test("a flipped bit mid-transfer fails the shipment and the generation, and frees the blocks on both sides")
        func faultFreesBlocks() async throws {
            let fixture = try HandoffFixture.get()
            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let prefillPool = fixture.prefillCache.freeBlockCount
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity)
            let transport = InMemoryKVTransport(
                receiverIdentity: fixture.identity, receiver: decode.receiver, faults: KVTransferFaults(flipBit: (layer: 7, byteOffset: 100)))
            let stream = try await decode.scheduler.open(
                HandoffFixture.state("bad", fixture.prompt, .greedy, maxTokens: 4), prompt: .transfer(timeout: .seconds(20)))
            let error = await #expect(throws: WorkerError.self) {
                _ = try await shipper.ship(requestID: "bad", prompt: fixture.prompt, via: transport)
            }
            #expect(error?.code == .transfer)
            #expect((error?.cause as? KVTransportError)?.code == .checksumMismatch)
            let failure = await #expect(throws: GenerationError.self) { _ = try await collect(stream) }
            #expect(failure?.code == .kvTransferFailed)
            #expect(try await allFree(decode.scheduler))
            #expect(fixture.prefillCache.freeBlockCount == prefillPool)
        }

        @Test("a transfer for a generation nobody opened is refused and the prefill side frees its sequence")
        func unopenedIsRefused() async throws {
            let fixture = try HandoffFixture.get()
            let decode = try fixture.decodeWorker(blocks: 2)
            defer { decode.scheduler.shutdown() }
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity)
            let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: decode.receiver)
            let error = await #expect(throws: WorkerError.self) {
                _ = try await shipper.ship(requestID: "big", prompt: fixture.prompt, via: transport)
            }
            #expect((error?.cause as? KVTransportError)?.code == .refused)
            #expect(decode.scheduler.load.freeBlocks == 2)
            #expect(fixture.prefillCache.sequenceCount == 0)
        }

        @Test("a receiver of another tokenizer is refused at the handshake")
        func incompatibleIdentity() async throws {
            let fixture = try HandoffFixture.get()
            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            var other = fixture.identity
            other.tokenizerHash = "fnv1a64-0"
            let shipper = try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity)
            let transport = InMemoryKVTransport(receiverIdentity: other, receiver: decode.receiver)
            let error = await #expect(throws: WorkerError.self) {
                _ = try await shipper.ship(requestID: "x", prompt: fixture.prompt, via: transport)
            }
            #expect((error?.cause as? KVTransportError)?.code == .incompatible)
            #expect(decode.scheduler.load.freeBlocks == decode.scheduler.load.totalBlocks)
        }

        @Test("prefill reports each layer once, in order, after the whole prompt's K/V is stored")
        func layerCallbackOrder() throws {
            let fixture = try HandoffFixture.get()
            let engine = fixture.prefill
            let cache = fixture.prefillCache
            let sequence = cache.createSequence()
            defer { cache.free(sequence) }
            let prompt = fixture.prompt
            var seen: [Int] = []
            var counts: [Int] = []
            _ = try engine.prefill(prompt, sequence: sequence) { layer in
                seen.append(layer)
                counts.append((try? cache.tokenCount(sequence)) ?? -1)
            }
            #expect(seen == Array(0..<fixture.model.configuration.layerCount))
            #expect(counts.allSatisfy { $0 == prompt.count })
            // The streamed layer equals the layer exported after prefill finished.
            let other = cache.createSequence()
            defer { cache.free(other) }
            var streamed: [[UInt8]] = []
            _ = try engine.prefill(prompt, sequence: other) { layer in
                streamed.append((try? cache.exportLayer(other, layer: layer)) ?? [])
            }
            for layer in [0, 13, streamed.count - 1] {
                let same = streamed[layer] == (try cache.exportLayer(other, layer: layer))
                #expect(same, "layer \(layer)")
            }
        }

        @Test("with a prompt longer than a chunk, layers are reported only once the last chunk stored them")
        func layerCallbackWithChunks() async throws {
            let fixture = try HandoffFixture.get()
            let cache = try PagedKVCache(layout: fixture.model.kvCacheLayout(), blockCount: 16)
            let engine = try PrefillEngine(model: fixture.model, cache: cache, threads: 2, chunkSize: 16, maxContext: 128)
            let prompt = fixture.prompt
            #expect(prompt.count > 32, "the prompt spans three chunks")
            let sequence = cache.createSequence()
            var seen: [Int] = []
            var streamed: [[UInt8]] = []
            _ = try engine.prefill(prompt, sequence: sequence) { layer in
                seen.append(layer)
                #expect((try? cache.tokenCount(sequence)) == prompt.count)
                streamed.append((try? cache.exportLayer(sequence, layer: layer)) ?? [])
            }
            #expect(seen == Array(0..<fixture.model.configuration.layerCount))
            for layer in seen {
                let same = streamed[layer] == (try cache.exportLayer(sequence, layer: layer))
                #expect(same, "layer \(layer)")
            }
            cache.free(sequence)

            // Shipping through a one-layer buffer (compute waits for the sender at every layer) lands the same KV.
            let decode = try fixture.decodeWorker()
            defer { decode.scheduler.shutdown() }
            let shipper = try PrefillKVShipper(engine: engine, identity: fixture.identity, maxBufferedLayers: 1)
            let recorder = LayerRecorder()
            let transport = InMemoryKVTransport(receiverIdentity: fixture.identity, receiver: recorder.wrapping(decode.receiver), chunkBytes: 4096)
            let stream = try await decode.scheduler.open(
                HandoffFixture.state("chunked", prompt, .greedy, maxTokens: 1), prompt: .transfer(timeout: .seconds(20)))
            _ = try await shipper.ship(requestID: "chunked", prompt: prompt, via: transport)
            #expect(try await collect(stream).tokens.count == 1)
            let layout = cache.layout
            let received = recorder.layers
            #expect(received.count == streamed.count)
            for (a, b) in zip(received, streamed) {
                // Slots past the last token hold whatever the reused blocks held before: compare the tokens' slots.
                let same = tokenSlots(a, layout: layout, tokens: prompt.count) == tokenSlots(b, layout: layout, tokens: prompt.count)
                #expect(same)
            }
            #expect(cache.sequenceCount == 0)
        }
    }
}

/// The bytes of one exported layer that belong to the first `tokens` positions (block by block: K then V, per KV
/// head `blockSize` slots of `headDim` elements).
func tokenSlots(_ bytes: [UInt8], layout: KVCacheLayout, tokens: Int) -> [UInt8] {
    let slotBytes = layout.headDim * layout.dataType.byteWidth
    var result: [UInt8] = []
    for block in 0..<layout.blocks(forTokens: tokens) {
        let valid = min(layout.blockSize, tokens - block * layout.blockSize)
        for half in 0..<2 {
            for head in 0..<layout.kvHeads {
                let start = block * layout.layerBlockBytes + ((half * layout.kvHeads + head) * layout.blockSize) * slotBytes
                result += bytes[start..<(start + valid * slotBytes)]
            }
        }
    }
    return result
}

/// Wraps a receiver and runs `tap` on each layer before the receiver gets it.
final class TappedReceiver: KVTransferReceiver, @unchecked Sendable {
    let inner: any KVTransferReceiver
    let tap: @Sendable (Int, UnsafeRawBufferPointer) async throws -> Void

    init(inner: any KVTransferReceiver, tap: @escaping @Sendable (Int, UnsafeRawBufferPointer) async throws -> Void) {
        self.inner = inner
        self.tap = tap
    }

    /// A slow link: sleeps `delay` before each layer.
    static func slow(_ inner: any KVTransferReceiver, delay: Duration) -> TappedReceiver {
        TappedReceiver(inner: inner) { _, _ in try await Task.sleep(for: delay) }
    }

    func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        Wrapped(inner: try await inner.beginTransfer(request, transport: transport), tap: tap)
    }

    final class Wrapped: KVInboundTransfer, @unchecked Sendable {
        let inner: any KVInboundTransfer
        let tap: @Sendable (Int, UnsafeRawBufferPointer) async throws -> Void
        init(inner: any KVInboundTransfer, tap: @escaping @Sendable (Int, UnsafeRawBufferPointer) async throws -> Void) {
            self.inner = inner
            self.tap = tap
        }
        func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws {
            try await tap(layer, bytes)
            try await inner.receiveLayer(layer, bytes: bytes)
        }
        func complete(_ completion: KVTransferCompletion) async throws { try await inner.complete(completion) }
        func fail(_ error: KVTransportError) async { await inner.fail(error) }
    }
}

/// A sender whose link takes `delay` before the transfer starts.
struct StallingSender: KVTransferSender {
    let inner: any KVTransferSender
    let delay: Duration

    func transfer(
        _ request: KVTransferRequest, produce: (KVOutboundTransfer) async throws -> KVTransferCompletion
    ) async throws(KVTransportError) -> KVTransferReport {
        try? await Task.sleep(for: delay)
        return try await inner.transfer(request, produce: produce)
    }
}

/// Keeps a copy of every layer a wrapped receiver is given.
final class LayerRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var received: [[UInt8]] = []
    var layers: [[UInt8]] { lock.withLock { received } }

    func wrapping(_ inner: any KVTransferReceiver) -> TappedReceiver {
        TappedReceiver(inner: inner) { [self] _, bytes in
            let copy = Array(bytes)
            lock.withLock { received.append(copy) }
        }
    }
}
