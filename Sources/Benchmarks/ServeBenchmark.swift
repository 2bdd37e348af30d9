import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `baton bench serve`: streaming chat completions against a running OpenAI-compatible server (Baton's router,
/// `baton serve`, llama-server), one level at a time, keeping a record of every request.
///
/// A level releases the workload's requests in one of three ways: a closed loop of `concurrency` clients, each
/// with one keep-alive HTTP/1.1 connection sending its requests one after another as the OpenAI SDKs do; Poisson
/// arrivals at a rate (open loop: a request goes out at its time whether or not earlier ones have been answered,
/// on a connection of its own); or the trace's own timestamps. A later turn of a conversation always waits for
/// the previous one and carries the history, the server's actual replies included.
public struct ServeBenchmark: Sendable {
    /// How a level releases the requests.
    public enum LevelSpec: Sendable, Equatable, CustomStringConvertible {
        case concurrency(Int)
        /// Poisson arrivals at this many requests per second.
        case rate(Double)
        /// The trace's timestamps divided by `speed` (2: twice as fast).
        case trace(speed: Double)

        public var description: String {
            switch self {
            case .concurrency(let clients): "concurrency \(clients)"
            case .rate(let rate): "rate \(Self.number(rate))/s"
            case .trace(let speed): speed == 1 ? "trace" : "trace ×\(Self.number(speed))"
            }
        }

        /// A rate or speed as the flags spell it: 2, 0.5.
        public static func number(_ value: Double) -> String {
            value == value.rounded() ? String(Int(value)) : String(value)
        }
    }

    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Sent as `model`; nil asks `GET /v1/models` for the first one.
        public var model: String?
        public var workload: ServeWorkload
        public var levels: [LevelSpec]
        public var temperature: Double
        /// Poisson schedules and each request's sampling seed (`seed + index`) derive from it.
        public var seed: UInt64
        public var slo: ServeSLO?
        public var apiKey: String?
        /// Longest wait for any byte of a response.
        public var timeout: Duration

        public init(
            host: String, port: Int, model: String? = nil, workload: ServeWorkload, levels: [LevelSpec],
            temperature: Double = 0.8, seed: UInt64 = 0, slo: ServeSLO? = nil, apiKey: String? = nil,
            timeout: Duration = .seconds(120)
        ) {
            self.host = host
            self.port = port
            self.model = model
            self.workload = workload
            self.levels = levels
            self.temperature = temperature
            self.seed = seed
            self.slo = slo
            self.apiKey = apiKey
            self.timeout = timeout
        }
    }

    /// What one level measured: its summary figures (flattened into the same JSON object) and every request.
    public struct Level: Codable, Sendable, Equatable {
        public var concurrency: Int?
        /// Requests per second asked for (Poisson levels).
        public var rate: Double?
        public var traceSpeed: Double?
        public var summary: LevelSummary
        public var records: [RequestRecord]
        /// The server's busy gauges over the level (see ``MetricsSampler``); empty without `/metrics`.
        public var timeline: [TimelineSample]

        public init(spec: LevelSpec, summary: LevelSummary, records: [RequestRecord], timeline: [TimelineSample] = []) {
            switch spec {
            case .concurrency(let clients): concurrency = clients
            case .rate(let rate): self.rate = rate
            case .trace(let speed): traceSpeed = speed
            }
            self.summary = summary
            self.records = records
            self.timeline = timeline
        }

        public var spec: LevelSpec {
            if let concurrency { return .concurrency(concurrency) }
            if let rate { return .rate(rate) }
            return .trace(speed: traceSpeed ?? 1)
        }

        enum CodingKeys: String, CodingKey {
            case concurrency, rate, traceSpeed = "trace_speed", records, timeline
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            concurrency = try container.decodeIfPresent(Int.self, forKey: .concurrency)
            rate = try container.decodeIfPresent(Double.self, forKey: .rate)
            traceSpeed = try container.decodeIfPresent(Double.self, forKey: .traceSpeed)
            records = try container.decode([RequestRecord].self, forKey: .records)
            timeline = try container.decodeIfPresent([TimelineSample].self, forKey: .timeline) ?? []
            summary = try LevelSummary(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            try summary.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(concurrency, forKey: .concurrency)
            try container.encodeIfPresent(rate, forKey: .rate)
            try container.encodeIfPresent(traceSpeed, forKey: .traceSpeed)
            try container.encode(records, forKey: .records)
            if !timeline.isEmpty { try container.encode(timeline, forKey: .timeline) }
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Runs every level in order; `progress` hears about each finished level.
    public func run(progress: (Level) -> Void = { _ in }) async throws -> (model: String, levels: [Level]) {
        let model = try await resolveModel()
        var levels: [Level] = []
        for spec in configuration.levels {
            let level = try await run(spec, model: model)
            progress(level)
            levels.append(level)
        }
        return (model, levels)
    }

    /// The `model` to send: the configured one, else the first of `GET /v1/models`.
    public func resolveModel() async throws -> String {
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

    /// One short request, not recorded: the first request a server sees pays for warming up.
    public func warmUp(model: String) async throws {
        let request = ServeWorkload.Request(index: 0, prompt: .words(16), maxTokens: 4)
        let record = await openLoop(request, scheduledMs: nil, levelStart: .now, model: model, log: ConversationLog())
        if let error = record.error {
            throw BenchmarkError(.protocolViolation, "the warm-up request to \(configuration.host):\(configuration.port) failed: \(error)")
        }
    }

    private var authorization: [(String, String)] {
        configuration.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    /// Runs one level over the whole workload.
    public func run(_ spec: LevelSpec, model: String) async throws -> Level {
        let requests = configuration.workload.requests
        guard !requests.isEmpty else { throw BenchmarkError(.invalidArgument, "the workload has no requests") }
        // The arrival times of an open-loop level (seconds after the start); nil for a closed loop.
        let schedule: [Double]?
        switch spec {
        case .concurrency(let clients):
            guard clients >= 1 else { throw BenchmarkError(.invalidArgument, "a level needs at least one client") }
            schedule = nil
        case .rate(let rate):
            guard rate > 0, rate.isFinite else { throw BenchmarkError(.invalidArgument, "a request rate must be positive") }
            schedule = ServeWorkload.poissonArrivals(count: requests.count, rate: rate, seed: configuration.seed)
        case .trace(let speed):
            guard speed > 0, speed.isFinite else { throw BenchmarkError(.invalidArgument, "a trace speed must be positive") }
            schedule = try requests.map { request throws(BenchmarkError) -> Double in
                guard let timestamp = request.timestamp else {
                    throw BenchmarkError(.invalidArgument, "a trace level needs a workload read from a trace file")
                }
                return timestamp / speed
            }
        }
        let log = ConversationLog()
        let started = ContinuousClock.now
        let sampler = MetricsSampler(host: configuration.host, port: configuration.port)
        sampler.start(at: started)
        let records: [RequestRecord]
        if case .concurrency(let clients) = spec {
            records = await closedLoop(clients: clients, model: model, log: log, started: started)
        } else {
            records = await openLoop(schedule: schedule ?? [], model: model, log: log, started: started)
        }
        let seconds = started.duration(to: .now) / .seconds(1)
        let timeline = await sampler.stop()
        let sorted = records.sorted { $0.index < $1.index }
        return Level(
            spec: spec, summary: LevelSummary(records: sorted, durationSeconds: seconds, slo: configuration.slo), records: sorted,
            timeline: timeline)
    }

    /// Every request released at its time (seconds after the start), each on a connection of its own.
    private func openLoop(schedule: [Double], model: String, log: ConversationLog, started: ContinuousClock.Instant) async -> [RequestRecord] {
        await withTaskGroup(of: RequestRecord.self) { group in
            for (request, time) in zip(configuration.workload.requests, schedule) {
                let due = started + .milliseconds(Int64((time * 1000).rounded()))
                if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
                group.addTask {
                    await openLoop(request, scheduledMs: time * 1000, levelStart: started, model: model, log: log)
                }
            }
            var records: [RequestRecord] = []
            for await record in group { records.append(record) }
            return records
        }
    }

    private func openLoop(
        _ request: ServeWorkload.Request, scheduledMs: Double?, levelStart: ContinuousClock.Instant, model: String,
        log: ConversationLog
    ) async -> RequestRecord {
        let messages = await log.messages(for: request, prompt: prompt(request))
        let sent = levelStart.duration(to: .now) / .milliseconds(1)
        do {
            return try await HTTPConnection.with(host: configuration.host, port: configuration.port) { connection in
                try await send(request, messages: messages, scheduledMs: scheduledMs, levelStart: levelStart, model: model, on: connection, log: log)
            }
        } catch {
            await log.finish(request.index, messages: Array(messages.dropLast()))
            return Self.failure(request, scheduledMs: scheduledMs, sentMs: sent, error)
        }
    }

    /// `clients` clients, each sending the next unsent request when its previous one is answered.
    private func closedLoop(clients: Int, model: String, log: ConversationLog, started: ContinuousClock.Instant) async -> [RequestRecord] {
        let requests = configuration.workload.requests
        let counter = RequestCounter(total: requests.count)
        return await withTaskGroup(of: [RequestRecord].self) { group in
            for _ in 0..<clients {
                group.addTask {
                    // One keep-alive connection per client; a failed request costs the connection, and the
                    // next request opens a new one.
                    var records: [RequestRecord] = []
                    var pending = counter.next()
                    while let first = pending {
                        var messages = await log.messages(for: requests[first], prompt: prompt(requests[first]))
                        var sentMs = started.duration(to: .now) / .milliseconds(1)
                        do {
                            try await HTTPConnection.with(host: configuration.host, port: configuration.port) { connection in
                                var index = first
                                while true {
                                    pending = index
                                    if index != first {
                                        messages = await log.messages(for: requests[index], prompt: prompt(requests[index]))
                                        sentMs = started.duration(to: .now) / .milliseconds(1)
                                    }
                                    records.append(try await send(
                                        requests[index], messages: messages, scheduledMs: nil, levelStart: started, model: model,
                                        on: connection, log: log))
                                    guard let next = counter.next() else { break }
                                    index = next
                                }
                            }
                            pending = nil
                        } catch {
                            if let index = pending {
                                await log.finish(index, messages: Array(messages.dropLast()))
                                records.append(Self.failure(requests[index], scheduledMs: nil, sentMs: sentMs, error))
                            }
                            pending = counter.next()
                        }
                    }
                    return records
                }
            }
            var all: [RequestRecord] = []
            for await part in group { all += part }
            return all
        }
    }

    private static func failure(_ request: ServeWorkload.Request, scheduledMs: Double?, sentMs: Double, _ error: any Error) -> RequestRecord {
        let reason = (error as? BenchError)?.reason ?? "transport"
        let message = (error as? BenchError)?.message ?? "\(error)"
        return RequestRecord(
            index: request.index, conversation: request.conversation, turn: request.turn, scheduledMs: scheduledMs,
            sentMs: sentMs, ttftMs: nil, e2eMs: nil, error: reason, errorMessage: String(message.prefix(300)))
    }

    /// The user message of `request`: its text, or about `words` words of filler different per request so that
    /// no cache can serve it.
    func prompt(_ request: ServeWorkload.Request) -> String {
        switch request.prompt {
        case .text(let text): return text
        case .words(let count): return Self.fillerPrompt(index: request.index, words: count)
        }
    }

    static func fillerPrompt(index: Int, words count: Int) -> String {
        let words = ["river", "stone", "lantern", "orchard", "signal", "harbor", "meadow", "copper", "engine", "violet", "canyon", "ledger"]
        var text = "Request \(index). Notes:"
        for i in 0..<max(0, count - 12) { text += " " + words[(i * 7 + index) % words.count] }
        return text + ". Write a short story about what these notes describe."
    }

    /// Sends one request on `connection` and records it; a non-200 answer or a stream without usage throws.
    private func send(
        _ request: ServeWorkload.Request, messages: [[String: String]], scheduledMs: Double?, levelStart: ContinuousClock.Instant,
        model: String, on connection: HTTPConnection, log: ConversationLog
    ) async throws -> RequestRecord {
        let body: [String: Any] = [
            "model": model, "stream": true, "stream_options": ["include_usage": true], "max_tokens": request.maxTokens,
            "temperature": configuration.temperature, "seed": Int(truncatingIfNeeded: configuration.seed &+ UInt64(request.index)),
            "messages": messages,
        ]
        let payload = try JSONSerialization.data(withJSONObject: body)
        let started = ContinuousClock.now
        let stream = StreamBox()
        let (status, errorBody) = try await connection.exchange(
            method: .POST, path: "/v1/chat/completions",
            headers: authorization + [("Content-Type", "application/json"), ("Accept", "text/event-stream")],
            body: Array(payload), timeout: configuration.timeout
        ) { line in
            guard line.hasPrefix("data: "), line != "data: [DONE]" else { return }
            guard let json = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any] else { return }
            if let choices = json["choices"] as? [[String: Any]], let delta = choices.first?["delta"] as? [String: Any],
                let content = delta["content"] as? String, !content.isEmpty
            {
                let now = started.duration(to: .now) / .milliseconds(1)
                if let last = stream.lastChunkMs { stream.gaps.append(now - last) } else { stream.firstTokenMs = now }
                stream.lastChunkMs = now
                stream.text += content
            }
            if let counts = json["usage"] as? [String: Any] {
                stream.completion = counts["completion_tokens"] as? Int ?? 0
                stream.prompt = counts["prompt_tokens"] as? Int ?? 0
            }
            // A Baton cluster says where the reply was made and how much KV moved (none: the decode worker ran it).
            if let served = json["baton"] as? [String: Any] {
                stream.kvBytes = served["kv_bytes"] as? Int ?? 0
                stream.kvBytesNotShipped = served["kv_bytes_not_shipped"] as? Int ?? 0
            }
        }
        let e2e = started.duration(to: .now) / .milliseconds(1)
        guard status == 200 else {
            throw BenchError(reason: "http \(status)", message: String(decoding: errorBody.prefix(300), as: UTF8.self))
        }
        guard stream.completion > 0 else {
            throw BenchError(reason: "no usage", message: "the stream ended without a usage chunk")
        }
        await log.finish(request.index, messages: messages + [["role": "assistant", "content": stream.text]])
        return RequestRecord(
            index: request.index, conversation: request.conversation, turn: request.turn, scheduledMs: scheduledMs,
            sentMs: levelStart.duration(to: started) / .milliseconds(1), ttftMs: stream.firstTokenMs ?? e2e, e2eMs: e2e,
            itlMs: stream.gaps, promptTokens: stream.prompt, completionTokens: stream.completion, kvBytes: stream.kvBytes,
            kvBytesNotShipped: stream.kvBytesNotShipped)
    }
}

struct BenchError: Error {
    var reason: String
    var message: String
}

/// The messages each request of a level sent and got back, so that a conversation's next turn can carry its
/// history; a later turn waits here until the previous one is finished (answered or failed).
actor ConversationLog {
    private var transcripts: [Int: [[String: String]]] = [:]
    private var waiting: [Int: [CheckedContinuation<[[String: String]], Never>]] = [:]

    /// The history `request` follows (after it has finished) with `prompt` as the new user message; a first turn
    /// opens with the request's system message, if it has one.
    func messages(for request: ServeWorkload.Request, prompt: String) async -> [[String: String]] {
        let turn = [["role": "user", "content": prompt]]
        guard let previous = request.follows else {
            return (request.system.map { [["role": "system", "content": $0]] } ?? []) + turn
        }
        if let transcript = transcripts[previous] { return transcript + turn }
        let transcript = await withCheckedContinuation { waiting[previous, default: []].append($0) }
        return transcript + turn
    }

    /// Records what request `index` leaves for the next turn: the whole exchange, or the history before it if it failed.
    func finish(_ index: Int, messages: [[String: String]]) {
        transcripts[index] = messages
        for continuation in waiting.removeValue(forKey: index) ?? [] { continuation.resume(returning: messages) }
    }
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

/// Filled by the line callback, read after the exchange (same task, no concurrency).
private final class StreamBox: @unchecked Sendable {
    var firstTokenMs: Double?
    var lastChunkMs: Double?
    var gaps: [Double] = []
    var text = ""
    var completion = 0
    var prompt = 0
    var kvBytes: Int?
    var kvBytesNotShipped: Int?
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

        // The watchdog closes the connection once nothing has arrived for `timeout`; every part pushes it back.
        let channel = self.channel
        let watch = SilenceWatch(timeout: timeout)
        let silence = Task {
            while let due = watch.due() {
                try await Task.sleep(until: due, clock: .continuous)
            }
            channel.close(promise: nil)
        }
        defer { silence.cancel() }
        var status = 0
        var collected: [UInt8] = []
        var line: [UInt8] = []
        while true {
            let next: HTTPClientResponsePart?
            do {
                next = try await iterator.next()
            } catch {
                if watch.expired { throw BenchError(reason: "timeout", message: "\(host) sent nothing for \(timeout)") }
                throw error
            }
            guard let part = next else { break }
            watch.heard()
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
        if watch.expired { throw BenchError(reason: "timeout", message: "\(host) sent nothing for \(timeout)") }
        throw BenchError(reason: "transport", message: "\(host) closed the connection mid-response")
    }
}

/// The deadline of a response's silence, pushed back whenever a part arrives.
private final class SilenceWatch: @unchecked Sendable {
    private let lock = NSLock()
    private let timeout: Duration
    private var deadline: ContinuousClock.Instant
    private var fired = false

    init(timeout: Duration) {
        self.timeout = timeout
        deadline = .now + timeout
    }

    func heard() {
        lock.withLock { deadline = .now + timeout }
    }

    /// The deadline to sleep until, or nil (and expired from then on) once it has passed.
    func due() -> ContinuousClock.Instant? {
        lock.withLock {
            if ContinuousClock.now >= deadline {
                fired = true
                return nil
            }
            return deadline
        }
    }

    var expired: Bool { lock.withLock { fired } }
}

