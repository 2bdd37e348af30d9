import Foundation
import Generation
import Inference
import KVTransport
import Logging
import RPC
import Tokenization
import Worker

/// Time to first token of colocated versus disaggregated generation, behind `baton bench kv`, on the paths that
/// serve users.
///
/// Colocated: a `DecodeScheduler` with a prefill engine runs the prompt and samples the first token (what
/// `baton serve` does). Disaggregated: a `PrefillKVShipper` (a prefill worker's) prefills the same prompt while
/// streaming each finished layer over mutual-TLS HTTP/2 on loopback to a decode-only `DecodeScheduler` through
/// `SchedulerKVReceiver` (a decode worker's receive path: layers land in the reserved blocks), which samples the
/// first token from the shipped logits. TTFT is from opening the generation to its first token event. Also
/// measured: the same transfer with the KV ready beforehand (no compute to hide behind). Figures are reported,
/// never asserted.
public enum TTFTBenchmark {
    public struct Measurement: Sendable, Equatable {
        public var tokens: Int
        /// Median milliseconds.
        public var colocatedMilliseconds: Double
        public var disaggregatedMilliseconds: Double
        /// The hand-off alone (KV already computed): what would add to TTFT without overlap.
        public var transferMilliseconds: Double
        public var bytes: Int
        /// Median CPU time of the whole process per run (user + system, every thread), in milliseconds: unlike
        /// wall time, hardly affected by what else the machine runs.
        public var colocatedCPUMilliseconds: Double = 0
        public var disaggregatedCPUMilliseconds: Double = 0

        /// CPU the hand-off adds to a request (transport, copies, checksums): what layer streaming must hide
        /// behind compute on a machine whose cores the engines already use.
        public var extraCPUMilliseconds: Double { disaggregatedCPUMilliseconds - colocatedCPUMilliseconds }

        /// Median over repetitions of disaggregated / colocated, each pair measured back to back (so a slow
        /// stretch of a shared machine slows both halves of a pair rather than one setup's median).
        public var ratio: Double = 0
        /// Fastest disaggregated over fastest colocated run: the overhead with the least interference.
        public var bestRatio: Double = 0
        /// Share of the transfer time that did not show up in TTFT (1: all hidden; can exceed 1 or go below 0 with noise).
        public var hiddenFraction: Double {
            transferMilliseconds > 0 ? 1 - (disaggregatedMilliseconds - colocatedMilliseconds) / transferMilliseconds : 0
        }
    }

    /// Measures each prompt length `repetitions` times and reports medians. Each repetition is a colocated and a
    /// disaggregated run back to back, in alternating order (a drift in machine speed favours neither).
    public static func run(
        model: TransformerModel, tokenizer: Tokenizer, tokenCounts: [Int] = [512, 2048], repetitions: Int = 3, threads: Int = 2,
        progress: @Sendable (String) -> Void = { _ in }
    ) async throws -> [Measurement] {
        guard repetitions > 0, let longest = tokenCounts.max(), tokenCounts.allSatisfy({ $0 > 0 }) else {
            throw WorkerError(.invalidArgument, "the TTFT benchmark needs positive token counts and repetitions")
        }
        let context = min(longest + 8, model.configuration.contextLength)
        guard longest < context else {
            throw WorkerError(.invalidArgument, "\(longest) tokens do not fit the model's context of \(model.configuration.contextLength)")
        }
        let layout = model.kvCacheLayout()
        let blocks = layout.blocks(forTokens: context) + 1
        let identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
        let weights = PrefillWeights(model: model, threads: threads)
        // The prefill worker's engine, and the two schedulers a cluster and `baton serve` run.
        let prefill = try PrefillEngine(
            model: model, cache: try PagedKVCache(layout: layout, blockCount: blocks), threads: threads, maxContext: context,
            weights: weights)
        // Every repetition sends the same prompt: with prefix caching the second one would reuse the first's KV
        // (on one side and not the other), and this measures what a prompt seen for the first time costs.
        let shipper = try PrefillKVShipper(engine: prefill, identity: identity, prefixCaching: false)
        var colocatedSettings = DecodeScheduler.Configuration(kvBlocks: blocks, maxBatch: 1, threads: threads, maxContext: context)
        colocatedSettings.prefillWeights = weights
        colocatedSettings.prefixCaching = false
        let colocated = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: colocatedSettings)
        var decodeSettings = DecodeScheduler.Configuration(
            kvBlocks: blocks, maxBatch: 1, threads: threads, maxContext: context, prefillEngine: false)
        decodeSettings.prefixCaching = false
        let decode = try DecodeScheduler(model: model, tokenizer: tokenizer, configuration: decodeSettings)
        colocated.start()
        decode.start()
        defer {
            colocated.shutdown()
            decode.shutdown()
        }

        var logger = Logger(label: "baton.bench-ttft")
        logger.logLevel = .error
        let authority = try ClusterCertificates.makeAuthority(name: "Baton benchmark CA")
        func configuration(_ node: String, _ role: NodeRole) throws -> KVTransportConfiguration {
            try KVTransportConfiguration.tlsStreamConfiguration(node: node, role: role, authority: authority, idleTimeout: .seconds(30))
        }
        let server = try await KVTransferServer.bind(
            host: "127.0.0.1", port: 0, configuration: try configuration("bench-decode", .decode), identity: identity,
            receiver: try SchedulerKVReceiver(scheduler: decode, identity: identity), logger: logger)
        let serving = Task { await server.run() }
        let client = try await KVTransferClient.connect(
            host: "127.0.0.1", port: server.port, configuration: try configuration("bench-prefill", .prefill), logger: logger)

        var measurements: [Measurement] = []
        var failure: (any Error)?
        do {
            // The connection's first transfer and each scheduler's first prompt pay for warming up: not timed.
            // (64 tokens, or fewer when every case is shorter: the context is sized for the longest case.)
            let warmUp = prompt(tokenizer, count: min(64, longest))
            _ = try await disaggregatedTTFT(warmUp, id: "warm-up", decode: decode, shipper: shipper, via: client)
            _ = try await colocatedTTFT(warmUp, id: "warm-up", scheduler: colocated)
            for count in tokenCounts {
                let tokens = prompt(tokenizer, count: count)
                var colocatedTimes: [Double] = [], disaggregated: [Double] = [], transfer: [Double] = []
                var colocatedCPU: [Double] = [], disaggregatedCPU: [Double] = []
                var bytes = 0
                for repetition in 0..<repetitions {
                    for colocatedTurn in repetition % 2 == 0 ? [true, false] : [false, true] {
                        let cpu = KVTransportBenchmark.processCPUSeconds()
                        let id = "ttft-\(count)-\(repetition)-\(colocatedTurn ? "c" : "d")"
                        if colocatedTurn {
                            colocatedTimes.append(try await colocatedTTFT(tokens, id: id, scheduler: colocated))
                            colocatedCPU.append((KVTransportBenchmark.processCPUSeconds() - cpu) * 1000)
                        } else {
                            let (milliseconds, sent) = try await disaggregatedTTFT(
                                tokens, id: id, decode: decode, shipper: shipper, via: client)
                            disaggregatedCPU.append((KVTransportBenchmark.processCPUSeconds() - cpu) * 1000)
                            disaggregated.append(milliseconds)
                            bytes = sent
                        }
                    }
                    transfer.append(
                        try await transferOnly(
                            prefill, tokens, identity: identity, decode: decode, via: client, id: "xfer-\(count)-\(repetition)"))
                }
                let m = Measurement(
                    tokens: count, colocatedMilliseconds: median(colocatedTimes),
                    disaggregatedMilliseconds: median(disaggregated), transferMilliseconds: median(transfer), bytes: bytes,
                    colocatedCPUMilliseconds: median(colocatedCPU), disaggregatedCPUMilliseconds: median(disaggregatedCPU),
                    ratio: median(zip(disaggregated, colocatedTimes).map { $0 / $1 }),
                    bestRatio: disaggregated.min()! / colocatedTimes.min()!)
                progress(
                    String(
                        format: "ttft %5d tokens: colocated %8.1f ms, disaggregated (mTLS h2, layer-streamed) %8.1f ms "
                            + "(%.3fx paired median, %.3fx best to best); "
                            + "transfer alone %6.1f ms for %.1f MB, %.0f%% of it hidden; CPU %.0f ms colocated, +%.0f ms for the hand-off",
                        count, m.colocatedMilliseconds, m.disaggregatedMilliseconds, m.ratio, m.bestRatio, m.transferMilliseconds,
                        Double(bytes) / 1e6, m.hiddenFraction * 100, m.colocatedCPUMilliseconds, m.extraCPUMilliseconds))
                measurements.append(m)
            }
        } catch {
            failure = error
        }
        await client.close()
        await server.close()
        serving.cancel()
        if let failure { throw failure }
        return measurements
    }

    /// In-vocabulary prompt of exactly `count` tokens: a text repeated and cut.
    static func prompt(_ tokenizer: Tokenizer, count: Int) -> [Int32] {
        let text = tokenizer.encode(
            "The committee reviewed the quarterly figures, compared them with the forecast, and asked each team to "
                + "explain the largest differences before the next meeting. ")
        var tokens: [Int32] = []
        while tokens.count < count { tokens += text }
        return Array(tokens.prefix(count))
    }

    /// A greedy one-token generation of `tokens`.
    static func firstTokenOnly(_ tokens: [Int32], id: String) -> GenerationState {
        GenerationState(request: GenerationRequest(id: id, prompt: tokens, maxNewTokens: 1, sampling: .greedy))
    }

    /// Milliseconds from opening the generation to its first token event.
    static func firstToken(of stream: GenerationStream, since started: ContinuousClock.Instant) async throws -> Double {
        for try await event in stream {
            if case .token = event { return (started.duration(to: .now) / .seconds(1)) * 1000 }
        }
        throw WorkerError(.inference, "the benchmark's generation ended without a token")
    }

    /// The prompt run here and its first token sampled, as `baton serve` does, in milliseconds.
    static func colocatedTTFT(_ tokens: [Int32], id: String, scheduler: DecodeScheduler) async throws -> Double {
        let started = ContinuousClock.now
        let stream = try await scheduler.open(firstTokenOnly(tokens, id: id), prompt: .computeHere)
        return try await firstToken(of: stream, since: started)
    }

    /// The decode worker opens the generation, the prefill worker streams the prompt's KV and logits to it, and the
    /// decode worker samples the first token: milliseconds, and the bytes that crossed.
    static func disaggregatedTTFT(
        _ tokens: [Int32], id: String, decode: DecodeScheduler, shipper: PrefillKVShipper, via sender: any KVTransferSender
    ) async throws -> (Double, Int) {
        let started = ContinuousClock.now
        let stream = try await decode.open(firstTokenOnly(tokens, id: id), prompt: .transfer(timeout: .seconds(60)))
        async let shipped = shipper.ship(requestID: id, prompt: tokens, via: sender)
        let milliseconds = try await firstToken(of: stream, since: started)
        return (milliseconds, try await shipped.transfer.bytes)
    }

    /// The hand-off of `tokens`' KV and logits with every layer computed beforehand, in milliseconds.
    static func transferOnly(
        _ engine: PrefillEngine, _ tokens: [Int32], identity: KVCompatibilityIdentity, decode: DecodeScheduler,
        via sender: any KVTransferSender, id: String
    ) async throws -> Double {
        let sequence = engine.cache.createSequence()
        defer { engine.cache.free(sequence) }
        let logits = try engine.prefill(tokens, sequence: sequence)
        let layers = try (0..<identity.layers).map { try engine.cache.exportLayer(sequence, layer: $0) }
        let stream = try await decode.open(firstTokenOnly(tokens, id: id), prompt: .transfer(timeout: .seconds(60)))
        let started = ContinuousClock.now
        _ = try await sender.transfer(KVTransferRequest(requestID: id, identity: identity, tokenCount: tokens.count)) { transfer in
            for (layer, bytes) in layers.enumerated() { try await transfer.send(layer: layer, bytes: bytes) }
            return KVTransferCompletion(tokenCount: tokens.count, logits: logits)
        }
        let milliseconds = (started.duration(to: .now) / .seconds(1)) * 1000
        for try await _ in stream {}
        return milliseconds
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
