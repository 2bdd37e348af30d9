import Foundation
import Inference
import KVTransport
import Logging
import Tokenization

/// Time to first token of colocated versus disaggregated generation, behind `baton bench kv`.
///
/// Colocated: one `PrefillEngine` prefills the prompt and samples the first token. Disaggregated: a
/// `PrefillKVShipper` prefills the same prompt while streaming each finished layer over mutual-TLS HTTP/2 on
/// loopback to a `DecodeKVReceiver` (its own cache and `DecodeEngine`, in this process), which imports it; the
/// first token counts once the decode side has it with every layer imported. Also measured: the same transfer
/// with the KV ready beforehand (no compute to hide behind), so the report shows how much of it streaming hides.
/// Figures are reported, never asserted.
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

        /// CPU the hand-off adds to a request (transport, copies, checksums, import): what layer streaming must
        /// hide behind compute on a machine whose cores the engines already use.
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
        let blocks = (context + layout.blockSize - 1) / layout.blockSize + 1
        let identity = KVCompatibilityIdentity(model: model, tokenizer: tokenizer, layout: layout)
        let prefillCache = try PagedKVCache(layout: layout, blockCount: blocks)
        let prefill = try PrefillEngine(model: model, cache: prefillCache, threads: threads, maxContext: context)
        // Room for the next request while the previous one's (one-token) generation frees its blocks.
        let decodeCache = try PagedKVCache(layout: layout, blockCount: 3 * blocks)
        let decode = try DecodeEngine(model: model, cache: decodeCache, threads: threads, maxBatch: 1, maxContext: context)
        let receiver = try DecodeKVReceiver(engine: decode, tokenizer: tokenizer, identity: identity)
        let draining = Task { for await _ in receiver.events {} }
        defer {
            receiver.finishEvents()
            draining.cancel()
        }
        let shipper = try PrefillKVShipper(engine: prefill, identity: identity)
        let firstTokenOnly = SamplingParameters(temperature: 0, maxTokens: 1)

        var logger = Logger(label: "baton.bench-ttft")
        logger.logLevel = .error
        let authority = try ClusterCertificates.makeAuthority(name: "Baton benchmark CA")
        func configuration(_ node: String) throws -> KVTransportConfiguration {
            try ClusterCertificates.tlsStreamConfiguration(node: node, authority: authority, idleTimeout: .seconds(30))
        }
        let server = try await KVTransferServer.bind(
            host: "127.0.0.1", port: 0, configuration: try configuration("bench-decode"), identity: identity,
            receiver: receiver, logger: logger)
        let serving = Task { await server.run() }
        let client = try await KVTransferClient.connect(
            host: "127.0.0.1", port: server.port, configuration: try configuration("bench-prefill"), logger: logger)

        var measurements: [Measurement] = []
        var failure: (any Error)?
        do {
            // The connection's first transfer pays for warming up: not timed.
            _ = try await shipper.ship(requestID: "warm-up", prompt: prompt(tokenizer, count: 64), parameters: firstTokenOnly, via: client)
            _ = try colocatedTTFT(prefill, prompt(tokenizer, count: 64))
            for count in tokenCounts {
                let tokens = prompt(tokenizer, count: count)
                var colocated: [Double] = [], disaggregated: [Double] = [], transfer: [Double] = []
                var colocatedCPU: [Double] = [], disaggregatedCPU: [Double] = []
                var bytes = 0
                for repetition in 0..<repetitions {
                    for colocatedTurn in repetition % 2 == 0 ? [true, false] : [false, true] {
                        let cpu = KVTransportBenchmark.processCPUSeconds()
                        if colocatedTurn {
                            colocated.append(try colocatedTTFT(prefill, tokens))
                            colocatedCPU.append((KVTransportBenchmark.processCPUSeconds() - cpu) * 1000)
                        } else {
                            let report = try await shipper.ship(
                                requestID: "ttft-\(count)-\(repetition)", prompt: tokens, parameters: firstTokenOnly, via: client)
                            disaggregatedCPU.append((KVTransportBenchmark.processCPUSeconds() - cpu) * 1000)
                            disaggregated.append(report.totalSeconds * 1000)
                            bytes = report.transfer.bytes
                        }
                    }
                    transfer.append(try await transferOnly(prefill, tokens, identity: identity, via: client, id: "xfer-\(count)-\(repetition)"))
                }
                let m = Measurement(
                    tokens: count, colocatedMilliseconds: median(colocated), disaggregatedMilliseconds: median(disaggregated),
                    transferMilliseconds: median(transfer), bytes: bytes, colocatedCPUMilliseconds: median(colocatedCPU),
                    disaggregatedCPUMilliseconds: median(disaggregatedCPU),
                    ratio: median(zip(disaggregated, colocated).map { $0 / $1 }),
                    bestRatio: disaggregated.min()! / colocated.min()!)
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

    /// Prefill plus the first token in one engine, in milliseconds.
    static func colocatedTTFT(_ engine: PrefillEngine, _ tokens: [Int32]) throws -> Double {
        let started = ContinuousClock.now
        let sequence = engine.cache.createSequence()
        defer { engine.cache.free(sequence) }
        var logits = try engine.prefill(tokens, sequence: sequence)
        var sampler = SamplingHandoff.sampler(parameters: .greedy, prompt: tokens, vocabularySize: logits.count)
        _ = sampler.sample(logits: &logits)
        return started.duration(to: .now).seconds * 1000
    }

    /// The hand-off of `tokens`' KV with every layer computed beforehand, in milliseconds.
    static func transferOnly(
        _ engine: PrefillEngine, _ tokens: [Int32], identity: KVCompatibilityIdentity, via sender: any KVTransferSender, id: String
    ) async throws -> Double {
        let sequence = engine.cache.createSequence()
        defer { engine.cache.free(sequence) }
        var logits = try engine.prefill(tokens, sequence: sequence)
        var sampler = SamplingHandoff.sampler(parameters: .greedy, prompt: tokens, vocabularySize: logits.count)
        let first = sampler.sample(logits: &logits).id
        let layers = try (0..<identity.layers).map { try engine.cache.exportLayer(sequence, layer: $0) }
        let state = try SamplingHandoff.state(parameters: SamplingParameters(temperature: 0, maxTokens: 1), seed: sampler.seed, prompt: tokens)
        let started = ContinuousClock.now
        _ = try await sender.transfer(KVTransferRequest(requestID: id, identity: identity, tokenCount: tokens.count)) { transfer in
            for (layer, bytes) in layers.enumerated() { try await transfer.send(layer: layer, bytes: bytes) }
            return KVTransferCompletion(firstToken: first, samplingState: state, tokenCount: tokens.count)
        }
        return started.duration(to: .now).seconds * 1000
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
