import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `baton bench serve`: a concurrency sweep of streaming chat completions against a running router,
/// reporting time to first token, time per output token and end-to-end latency percentiles, and throughput.
///
/// Each simulated client keeps one HTTP/1.1 connection and sends its requests one after another, as the
/// OpenAI SDKs do; a level runs `requests` requests over `concurrency` such clients.
public struct ServeBenchmark: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Sent as `model`; nil asks `GET /v1/models` for the first one.
        public var model: String?
        public var concurrencyLevels: [Int]
        /// Requests per level (at least the level's concurrency).
        public var requests: Int
        /// Approximate prompt length (words of filler text plus the question).
        public var promptWords: Int
        public var maxTokens: Int
        public var apiKey: String?
        /// Longest wait for any byte of a response.
        public var timeout: Duration

        public init(
            host: String, port: Int, model: String? = nil, concurrencyLevels: [Int] = [1, 2, 4], requests: Int = 16,
            promptWords: Int = 64, maxTokens: Int = 32, apiKey: String? = nil, timeout: Duration = .seconds(120)
        ) {
            self.host = host
            self.port = port
            self.model = model
            self.concurrencyLevels = concurrencyLevels
            self.requests = requests
            self.promptWords = promptWords
            self.maxTokens = maxTokens
            self.apiKey = apiKey
            self.timeout = timeout
        }
    }

    /// Percentiles of one measure, in milliseconds.
    public struct Percentiles: Codable, Sendable, Equatable {
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var mean: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            func at(_ q: Double) -> Double {
                guard !sorted.isEmpty else { return 0 }
                return sorted[min(sorted.count - 1, Int((q * Double(sorted.count - 1)).rounded()))]
            }
            p50 = at(0.5)
            p90 = at(0.9)
            p99 = at(0.99)
            mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
        }
    }

    /// What one concurrency level measured.
    public struct Level: Codable, Sendable, Equatable {
        public var concurrency: Int
        public var requests: Int
        public var succeeded: Int
        /// Failures by reason (HTTP status or transport error).
        public var errors: [String: Int]
        public var ttftMs: Percentiles
        public var tpotMs: Percentiles
        public var e2eMs: Percentiles
        public var outputTokensPerSecond: Double
        public var requestsPerSecond: Double
        public var promptTokensMean: Double

        enum CodingKeys: String, CodingKey {
            case concurrency, requests, succeeded, errors, ttftMs = "ttft_ms", tpotMs = "tpot_ms", e2eMs = "e2e_ms"
            case outputTokensPerSecond = "output_tokens_per_second", requestsPerSecond = "requests_per_second"
            case promptTokensMean = "prompt_tokens_mean"
        }
    }

    public struct Report: Codable, Sendable, Equatable {
        public var model: String
        public var maxTokens: Int
        public var levels: [Level]

        enum CodingKeys: String, CodingKey {
            case model, maxTokens = "max_tokens", levels
        }
    }

    /// One request's outcome.
    struct Sample {
        var ttft: Double
        var tpot: Double?
        var e2e: Double
        var completionTokens: Int
        var promptTokens: Int
    }

    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Runs every level in order; `progress` hears about each finished level.
    public func run(progress: @Sendable (Level) -> Void = { _ in }) async throws -> Report {
        let model = try await resolveModel()
        var levels: [Level] = []
        for concurrency in configuration.concurrencyLevels {
            let level = try await runLevel(concurrency: concurrency, model: model)
            progress(level)
            levels.append(level)
        }
        return Report(model: model, maxTokens: configuration.maxTokens, levels: levels)
    }

    private func resolveModel() async throws -> String {
        if let model = configuration.model { return model }
        let (status, body) = try await HTTPConnection.with(host: configuration.host, port: configuration.port) {
            try await $0.exchange(
                method: .GET, path: "/v1/models", headers: authorization, body: nil, timeout: configuration.timeout,
                onLine: nil)
        }
        guard status == 200,
            let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let data = json["data"] as? [[String: Any]], let id = data.first?["id"] as? String
        else {
            throw BenchmarkError(.protocolViolation, "GET /v1/models on \(configuration.host):\(configuration.port) answered \(status) without a model id")
        }
        return id
    }

    private var authorization: [(String, String)] {
        configuration.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    private func runLevel(concurrency: Int, model: String) async throws -> Level {
        let total = max(configuration.requests, concurrency)
        let counter = RequestCounter(total: total)
        let started = ContinuousClock.now
        let outcomes = await withTaskGroup(of: [Result<Sample, BenchError>].self) { group in
            for client in 0..<concurrency {
                group.addTask {
                    // One keep-alive connection per client; a failed request costs the connection, and the
                    // next request opens a new one.
                    var results: [Result<Sample, BenchError>] = []
                    var pending = counter.next()
                    while let first = pending {
                        do {
                            try await HTTPConnection.with(host: configuration.host, port: configuration.port) { connection in
                                var index = first
                                while true {
                                    pending = index
                                    results.append(.success(try await oneRequest(index: index, client: client, model: model, on: connection)))
                                    guard let next = counter.next() else { break }
                                    index = next
                                }
                            }
                            pending = nil
                        } catch let error as BenchError {
                            results.append(.failure(error))
                            pending = counter.next()
                        } catch {
                            results.append(.failure(BenchError(reason: "transport", message: "\(error)")))
                            pending = counter.next()
                        }
                    }
                    return results
                }
            }
            var all: [Result<Sample, BenchError>] = []
            for await part in group { all += part }
            return all
        }
        let seconds = max(1e-9, (started.duration(to: .now) / .seconds(1)))
        let samples = outcomes.compactMap { try? $0.get() }
        var errors: [String: Int] = [:]
        for case .failure(let error) in outcomes { errors[error.reason, default: 0] += 1 }
        let outputTokens = samples.reduce(0) { $0 + $1.completionTokens }
        return Level(
            concurrency: concurrency, requests: total, succeeded: samples.count, errors: errors,
            ttftMs: Percentiles(samples.map { $0.ttft * 1000 }),
            tpotMs: Percentiles(samples.compactMap { $0.tpot.map { $0 * 1000 } }),
            e2eMs: Percentiles(samples.map { $0.e2e * 1000 }),
            outputTokensPerSecond: Double(outputTokens) / seconds, requestsPerSecond: Double(samples.count) / seconds,
            promptTokensMean: samples.isEmpty ? 0 : Double(samples.reduce(0) { $0 + $1.promptTokens }) / Double(samples.count))
    }

    /// A prompt of about `promptWords` words, different per request so no cache can serve it.
    func prompt(index: Int) -> String {
        let words = ["river", "stone", "lantern", "orchard", "signal", "harbor", "meadow", "copper", "engine", "violet", "canyon", "ledger"]
        var text = "Request \(index). Notes:"
        for i in 0..<max(0, configuration.promptWords - 12) { text += " " + words[(i * 7 + index) % words.count] }
        return text + ". Write a short story about what these notes describe."
    }

    private func oneRequest(index: Int, client: Int, model: String, on connection: HTTPConnection) async throws -> Sample {
        let body: [String: Any] = [
            "model": model, "stream": true, "stream_options": ["include_usage": true], "max_tokens": configuration.maxTokens,
            "temperature": 0.8, "seed": index, "user": "bench-\(client)",
            "messages": [["role": "user", "content": prompt(index: index)]],
        ]
        let payload = try JSONSerialization.data(withJSONObject: body)
        let started = ContinuousClock.now
        let firstToken = TimeBox()
        let usage = UsageBox()
        let (status, errorBody) = try await connection.exchange(
            method: .POST, path: "/v1/chat/completions",
            headers: authorization + [("Content-Type", "application/json"), ("Accept", "text/event-stream")],
            body: Array(payload), timeout: configuration.timeout
        ) { line in
            guard line.hasPrefix("data: "), line != "data: [DONE]" else { return }
            guard let json = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any] else { return }
            if let choices = json["choices"] as? [[String: Any]], let delta = choices.first?["delta"] as? [String: Any],
                let content = delta["content"] as? String, !content.isEmpty, firstToken.value == nil
            {
                firstToken.value = (started.duration(to: .now) / .seconds(1))
            }
            if let counts = json["usage"] as? [String: Any] {
                usage.completion = counts["completion_tokens"] as? Int ?? 0
                usage.prompt = counts["prompt_tokens"] as? Int ?? 0
            }
        }
        let e2e = (started.duration(to: .now) / .seconds(1))
        guard status == 200 else {
            throw BenchError(reason: "http \(status)", message: String(decoding: errorBody.prefix(300), as: UTF8.self))
        }
        guard usage.completion > 0 else {
            throw BenchError(reason: "no usage", message: "the stream ended without a usage chunk")
        }
        let ttft = firstToken.value ?? e2e
        let tpot = usage.completion > 1 ? (e2e - ttft) / Double(usage.completion - 1) : nil
        return Sample(ttft: ttft, tpot: tpot, e2e: e2e, completionTokens: usage.completion, promptTokens: usage.prompt)
    }
}

struct BenchError: Error {
    var reason: String
    var message: String
}

/// Hands out request indices to the level's clients.
private final class RequestCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var issued = 0
    private let total: Int

    init(total: Int) { self.total = total }

    func next() -> Int? {
        lock.withLock {
            guard issued < total else { return nil }
            issued += 1
            return issued - 1
        }
    }
}

/// Set by the line callback, read after the exchange (same task, no concurrency).
private final class TimeBox: @unchecked Sendable { var value: Double? }
private final class UsageBox: @unchecked Sendable {
    var completion = 0
    var prompt = 0
}

/// A minimal keep-alive HTTP/1.1 client connection over NIO, lent to a closure: one exchange at a time.
final class HTTPConnection {
    private let channel: any Channel
    private var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let host: String

    /// Connects, runs `body` with the connection and closes it, however `body` ends.
    static func with<Result>(
        host: String, port: Int, _ body: (HTTPConnection) async throws -> Result
    ) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(HTTPConnection(
                channel: channel.channel, iterator: inbound.makeAsyncIterator(), outbound: outbound, host: "\(host):\(port)"))
        }
    }

    private init(
        channel: any Channel, iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, host: String
    ) {
        self.channel = channel
        self.iterator = iterator
        self.outbound = outbound
        self.host = host
    }

    /// Sends one request; `onLine` sees each line of the body as it arrives (SSE). Returns the status and,
    /// without `onLine`, the body. Fails if no byte arrives for `timeout`.
    func exchange(
        method: HTTPMethod, path: String, headers: [(String, String)], body: [UInt8]?, timeout: Duration,
        onLine: ((String) -> Void)?
    ) async throws -> (Int, [UInt8]) {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: host)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body { head.headers.add(name: "Content-Length", value: String(body.count)) }
        try await outbound.write(.head(head))
        if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
        try await outbound.write(.end(nil))

        let channel = self.channel
        let silence = Task {
            try await Task.sleep(for: timeout)
            channel.close(promise: nil)
        }
        defer { silence.cancel() }
        var status = 0
        var collected: [UInt8] = []
        var line: [UInt8] = []
        while let part = try await iterator.next() {
            switch part {
            case .head(let response):
                status = Int(response.status.code)
            case .body(let buffer):
                if let onLine, status == 200 {
                    for byte in buffer.readableBytesView {
                        if byte == UInt8(ascii: "\n") {
                            onLine(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                            line.removeAll(keepingCapacity: true)
                        } else {
                            line.append(byte)
                        }
                    }
                } else {
                    collected.append(contentsOf: buffer.readableBytesView)
                }
            case .end:
                return (status, collected)
            }
        }
        throw BenchError(reason: "transport", message: "\(host) closed the connection mid-response")
    }
}

