import ClusterProtocol
import RPC
import Logging

/// Talks to the placement service over its mutual-TLS HTTP/2 listener (JSON bodies). Reconnects on demand:
/// a placement service that restarts is found again by the next call. Thread-safe.
public final class PlacementClient: Sendable {
    public let host: String
    public let port: Int
    private let pool: NodeClientPool
    private let timeout: Duration

    /// - Parameter timeout: longest wait for each call, connecting included.
    public init(host: String, port: Int, tls: NodeTLS?, insecure: Bool = false, timeout: Duration = .seconds(5)) {
        self.host = host
        self.port = port
        self.pool = NodeClientPool(tls: tls, insecure: insecure, connectTimeout: timeout)
        self.timeout = timeout
    }

    public func register(_ request: RegisterRequest) async throws(ClusterError) -> RegisterResponse {
        let response = try await call(BatonProtocol.Placement.register, body: request)
        guard response.status == 200 else { throw refusal(response, doing: "registering \(request.profile.name)") }
        return try decode(RegisterResponse.self, response)
    }

    /// Returns false when the service does not know the worker (it should register again).
    public func heartbeat(_ request: HeartbeatRequest) async throws(ClusterError) -> HeartbeatResponse? {
        let response = try await call(BatonProtocol.Placement.heartbeat, body: request)
        if response.status == 404 { return nil }
        guard response.status == 200 else { throw refusal(response, doing: "heartbeat of \(request.name)") }
        // An empty body is a placement service that does not answer with more.
        return (try? PlacementJSON.decode(HeartbeatResponse.self, from: response.body)) ?? HeartbeatResponse(resetKVEvents: false)
    }

    public func leave(name: String, incarnation: String? = nil) async throws(ClusterError) {
        let response = try await call(BatonProtocol.Placement.leave, body: LeaveRequest(name: name, incarnation: incarnation))
        guard response.status == 200 || response.status == 404 else { throw refusal(response, doing: "leaving as \(name)") }
    }

    /// Where a prompt of `promptTokens` tokens should run, leaving out the workers in `excluding`. A refusal
    /// throws `.overloaded` (with its retry delay) or `.unavailable`.
    public func choose(promptTokens: Int, excluding: [String] = []) async throws(ClusterError) -> ChooseResponse {
        let response = try await call(
            BatonProtocol.Placement.choose, body: ChooseRequest(promptTokens: promptTokens, exclude: excluding))
        guard response.status == 200 else { throw refusal(response, doing: "choosing workers") }
        return try decode(ChooseResponse.self, response)
    }

    /// Opens the membership watch: snapshots arrive as placement sends them (the first at once). Reading
    /// throws when the connection breaks or stays silent for `idleTimeout` (placement sends keep-alives every
    /// `PlacementService.watchKeepAlive`).
    public func watch(idleTimeout: Duration = .seconds(5)) async throws(ClusterError) -> MembershipWatchStream {
        let opened: NodeStreamResponse
        do {
            let client = try await pool.client(host: host, port: port, expecting: .role(.placement))
            opened = try await client.stream(BatonProtocol.Placement.watch, body: [], contentType: "application/json",
                                             idleTimeout: idleTimeout)
        } catch {
            let code: ClusterError.Code = error.code == .timeout ? .timeout : error.code == .forbidden ? .forbidden : .unavailable
            throw ClusterError(code, "placement service at \(host):\(port) did not answer the watch: \(error.message)", cause: error)
        }
        guard opened.status == 200 else {
            throw refusal(status: opened.status, body: opened.body, doing: "watching the membership")
        }
        return MembershipWatchStream(source: "placement service at \(host):\(port)", response: opened)
    }

    /// What `choose` would answer for a prompt of `promptTokens` tokens, and why; chooses nothing. With the prompt's
    /// token ids, scores count what each worker's caches hold of it.
    public func explain(promptTokens: Int, prompt: [Int32]? = nil) async throws(ClusterError) -> ExplainResponse {
        let response = try await call(
            BatonProtocol.Placement.explain, body: ChooseRequest(promptTokens: promptTokens, prompt: prompt))
        guard response.status == 200 else { throw refusal(response, doing: "explaining a placement") }
        return try decode(ExplainResponse.self, response)
    }

    public func status() async throws(ClusterError) -> ClusterStatus {
        let response = try await send(BatonProtocol.Placement.status, method: "GET", body: [])
        guard response.status == 200 else { throw refusal(response, doing: "reading the cluster status") }
        return try decode(ClusterStatus.self, response)
    }

    public func close() async {
        await pool.closeAll()
    }

    private func call(_ path: String, body: some Encodable) async throws(ClusterError) -> NodeResponse {
        let bytes: [UInt8]
        do { bytes = try PlacementJSON.encode(body) } catch {
            throw ClusterError(.invalidArgument, "could not encode the request to \(path)", cause: error)
        }
        return try await send(path, method: "POST", body: bytes)
    }

    private func send(_ path: String, method: String, body: [UInt8]) async throws(ClusterError) -> NodeResponse {
        do {
            // Whatever answers at host:port must hold a placement certificate: a worker or router there is refused.
            let client = try await pool.client(host: host, port: port, expecting: .role(.placement))
            return try await client.call(path, method: method, body: body, timeout: timeout)
        } catch {
            let code: ClusterError.Code = error.code == .timeout ? .timeout : error.code == .forbidden ? .forbidden : .unavailable
            throw ClusterError(code, "placement service at \(host):\(port) did not answer \(path): \(error.message)", cause: error)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: NodeResponse) throws(ClusterError) -> T {
        do { return try PlacementJSON.decode(type, from: response.body) } catch {
            throw ClusterError(.protocolViolation, "placement service at \(host):\(port) sent an unreadable \(T.self)", cause: error)
        }
    }

    private func refusal(_ response: NodeResponse, doing what: String) -> ClusterError {
        refusal(status: response.status, body: response.body, doing: what)
    }

    private func refusal(status: Int, body bytes: [UInt8], doing what: String) -> ClusterError {
        let body = try? PlacementJSON.decode(PlacementRefusal.self, from: bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        let message = body?.message ?? (text.isEmpty ? "HTTP \(status)" : text)
        let code: ClusterError.Code =
            switch status {
            case 403: .forbidden
            case 429: .overloaded
            case 503: .unavailable
            case 400..<500: .rejected
            default: .internalError
            }
        return ClusterError(code, "\(what): \(message)", retryAfterSeconds: body?.retryAfterSeconds)
    }
}

/// An open membership watch, read by one task.
public final class MembershipWatchStream {
    private let source: String
    private var messages: AsyncThrowingStream<[UInt8], any Error>.Iterator
    private let cancelStream: @Sendable () -> Void

    init(source: String, response: NodeStreamResponse) {
        self.source = source
        self.messages = response.messages.makeAsyncIterator()
        self.cancelStream = response.cancel
    }

    deinit { cancelStream() }

    /// The next snapshot; nil when placement ended the stream. Throws `.unavailable` when the stream breaks or
    /// stays silent too long, `.protocolViolation` for an unreadable snapshot.
    public func next() async throws(ClusterError) -> MembershipSnapshot? {
        let bytes: [UInt8]?
        do { bytes = try await messages.next() } catch {
            throw ClusterError(.unavailable, "the membership watch from \(source) broke: \(error)", cause: error)
        }
        guard let bytes else { return nil }
        do {
            return try PlacementJSON.decode(MembershipSnapshot.self, from: bytes)
        } catch {
            throw ClusterError(.protocolViolation, "\(source) sent an unreadable membership snapshot", cause: error)
        }
    }

    /// Closes the stream (placement's handler ends).
    public func cancel() { cancelStream() }
}
