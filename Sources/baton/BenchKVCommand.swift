import ArgumentParser
import Foundation
import Inference
import KVTransport
import Worker

/// `baton bench kv`: KV hand-off throughput over each transport that runs here, beside memcpy.
struct BenchKVCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Measure KV hand-off throughput (mutual-TLS HTTP/2, plaintext HTTP/2, shared memory, memcpy) and TTFT of disaggregated vs colocated generation.",
        discussion: """
            TTFT: colocated = prefill and the first token in one engine; disaggregated = prefill streaming each finished
            layer over mutual-TLS HTTP/2 on loopback to a decode engine in this process, until the decode side holds
            every layer and the first token. "transfer alone" is the same hand-off with the KV computed beforehand:
            the part of it missing from the TTFT difference is what layer streaming hides. The TTFT ratio is the median
            of back-to-back pairs (alternating which runs first); the best-to-best ratio is the least disturbed.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .long, help: "Prompt lengths for the TTFT comparison (default 512 and 2048).")
    var ttftTokens: [Int] = [512, 2048]

    @Flag(name: .long, help: "Skip the TTFT comparison (no model needed).")
    var noTTFT = false

    @Option(name: .long, help: "Threads of each engine in the TTFT comparison (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Prompt lengths in tokens whose KV is handed off (default model layout).")
    var tokens: [Int] = [2048, 8192]

    @Option(name: .long, help: "Timed repetitions per case (the best and the median are reported).")
    var repetitions: Int = 3

    @Option(name: .long, help: "Repetitions of each TTFT case (each a colocated and a disaggregated run).")
    var ttftRepetitions: Int = 7

    @Flag(name: .long, help: "Print one JSON object on the last line.")
    var json = false

    func run() async throws {
        let results = try await KVTransportBenchmark.run(tokenCounts: tokens, repetitions: repetitions) { line in
            print(line)
        }
        var ttft: [TTFTBenchmark.Measurement] = []
        if !noTTFT {
            let (file, tokenizer) = try GenerateCommand.open(try modelOptions.resolvedPath())
            let model = try TransformerModel(file: file)
            ttft = try await TTFTBenchmark.run(
                model: model, tokenizer: tokenizer, tokenCounts: ttftTokens, repetitions: ttftRepetitions, threads: threads
            ) { line in print(line) }
        }
        guard json else { return }
        var object: [String: Double] = [:]
        func rounded(_ value: Double, _ places: Double = 1000) -> Double { (value * places).rounded() / places }
        for m in ttft {
            let suffix = m.tokens % 1024 == 0 ? "\(m.tokens / 1024)k" : "\(m.tokens)"
            object["ttft_colocated_ms_\(suffix)"] = rounded(m.colocatedMilliseconds, 10)
            object["ttft_disaggregated_ms_\(suffix)"] = rounded(m.disaggregatedMilliseconds, 10)
            object["ttft_ratio_\(suffix)"] = rounded(m.ratio)
            object["ttft_best_ratio_\(suffix)"] = rounded(m.bestRatio)
            object["ttft_transfer_ms_\(suffix)"] = rounded(m.transferMilliseconds, 10)
            object["ttft_hidden_fraction_\(suffix)"] = rounded(m.hiddenFraction)
            object["ttft_extra_cpu_ms_\(suffix)"] = rounded(m.extraCPUMilliseconds, 10)
        }
        let keys: [(String, String)] = [
            ("tls_h2_gbps", KVTransportKind.tlsHTTP2.rawValue), ("plain_h2_gbps", KVTransportKind.plaintextHTTP2.rawValue),
            ("shm_gbps", KVTransportKind.sharedMemory.rawValue), ("memcpy_gbps", KVTransportBenchmark.memcpyName),
        ]
        for (key, transport) in keys {
            if let value = results.gigabytesPerSecond(transport) { object[key] = (value * 1000).rounded() / 1000 }
            for m in results.measurements where m.transport == transport {
                object["\(key.dropLast(5))_\(m.tokens / 1024)k_gbps"] = (m.gigabytesPerSecond * 1000).rounded() / 1000
                if m.cpuSecondsPerRun > 0 {
                    // CPU seconds (both ends, one process) per GB handed off.
                    object["\(key.dropLast(5))_\(m.tokens / 1024)k_cpu_s_per_gb"] = rounded(m.cpuSecondsPerRun * 1e9 / Double(m.bytes))
                }
            }
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
