import ArgumentParser
import Foundation
import KVTransport

/// `baton bench kv`: KV hand-off throughput over each transport that runs here, beside memcpy.
struct BenchKVCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Measure KV hand-off throughput: mutual-TLS HTTP/2, plaintext HTTP/2, shared memory, memcpy (loopback).")

    @Option(name: .long, help: "Prompt lengths in tokens whose KV is handed off (default model layout).")
    var tokens: [Int] = [2048, 8192]

    @Option(name: .long, help: "Timed repetitions per case (the best and the median are reported).")
    var repetitions: Int = 3

    @Flag(name: .long, help: "Print one JSON object on the last line.")
    var json = false

    func run() async throws {
        let results = try await KVTransportBenchmark.run(tokenCounts: tokens, repetitions: repetitions) { line in
            print(line)
        }
        guard json else { return }
        var object: [String: Double] = [:]
        let keys: [(String, String)] = [
            ("tls_h2_gbps", KVTransportKind.tlsHTTP2.rawValue), ("plain_h2_gbps", KVTransportKind.plaintextHTTP2.rawValue),
            ("shm_gbps", KVTransportKind.sharedMemory.rawValue), ("memcpy_gbps", KVTransportBenchmark.memcpyName),
        ]
        for (key, transport) in keys {
            if let value = results.gigabytesPerSecond(transport) { object[key] = (value * 1000).rounded() / 1000 }
            for m in results.measurements where m.transport == transport {
                object["\(key.dropLast(5))_\(m.tokens / 1024)k_gbps"] = (m.gigabytesPerSecond * 1000).rounded() / 1000
            }
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
