import ArgumentParser
import Benchmarks
import Foundation

/// `baton bench serve`: load against a running router (`baton up`, `baton router` or `baton serve`).
struct BenchServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Concurrency sweep of streaming chat completions against a running OpenAI-compatible server.",
        discussion: """
            Reports, per concurrency level, time to first token (TTFT), time per output token (TPOT) and end-to-end
            percentiles in ms, and output tokens/s. With --json, one JSON object on the last line.
            Example: baton bench serve --url http://127.0.0.1:8080 --concurrency 1,2,4,8 --requests 32
            """)

    @Option(help: "Base URL of the server (http://HOST:PORT, with or without /v1).")
    var url = "http://127.0.0.1:8080"

    @Option(help: "Comma-separated numbers of concurrent clients.")
    var concurrency = "1,2,4"

    @Option(help: "Requests per concurrency level.")
    var requests = 16

    @Option(name: .customLong("prompt-words"), help: "Approximate prompt length in words.")
    var promptWords = 64

    @Option(name: .customLong("max-tokens"), help: "max_tokens of each request.")
    var maxTokens = 32

    @Option(help: "Model id (default: the first of GET /v1/models).")
    var model: String?

    @Option(name: .customLong("api-key"), help: "Bearer API key, if the server wants one.")
    var apiKey: String?

    @Option(help: "Seconds a response may stay silent.")
    var timeout: Double = 120

    @Flag(help: "Print one JSON object on the last line.")
    var json = false

    func levels() throws -> [Int] {
        let values = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--concurrency takes positive integers separated by commas, got \"\(concurrency)\"")
        }
        return values.map { $0! }
    }

    func endpoint() throws -> (String, Int) {
        guard let parsed = URLComponents(string: url), parsed.scheme == "http", let host = parsed.host else {
            throw ValidationError("--url must look like http://HOST:PORT, got \"\(url)\" (https is not supported here)")
        }
        return (host, parsed.port ?? 80)
    }

    func validate() throws {
        _ = try levels()
        _ = try endpoint()
        guard requests >= 1, maxTokens >= 1, promptWords >= 1, timeout > 0 else {
            throw ValidationError("--requests, --max-tokens, --prompt-words and --timeout must be positive")
        }
    }

    func run() async throws {
        let (host, port) = try endpoint()
        let benchmark = ServeBenchmark(configuration: .init(
            host: host, port: port, model: model, concurrencyLevels: try levels(), requests: requests,
            promptWords: promptWords, maxTokens: maxTokens, apiKey: apiKey, timeout: .milliseconds(Int(timeout * 1000))))
        if !json {
            print("concurrency  ok/req  TTFT p50/p90/p99 ms      TPOT p50/p90/p99 ms    e2e p50 ms  out tok/s  req/s")
        }
        let quiet = json
        let report = try await benchmark.run { level in
            guard !quiet else { return }
            func triple(_ p: ServeBenchmark.Percentiles) -> String {
                String(format: "%6.0f %6.0f %6.0f", p.p50, p.p90, p.p99)
            }
            let errors = level.errors.isEmpty ? "" : "  errors: " + level.errors.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            print(String(format: "%11d  %3d/%-3d %@   %@   %9.0f  %9.1f  %5.2f",
                         level.concurrency, level.succeeded, level.requests, triple(level.ttftMs), triple(level.tpotMs),
                         level.e2eMs.p50, level.outputTokensPerSecond, level.requestsPerSecond) + errors)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        }
        if report.levels.contains(where: { $0.succeeded == 0 }) { throw ExitCode(1) }
    }
}
