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
    public func heartbeat(_ request: HeartbeatRequest) async throws(ClusterError) -> Bool {
        let response = try await call(BatonProtocol.Placement.heartbeat, body: request)
        if response.status == 404 { return false }
        guard response.status == 200 else { throw refusal(response, doing: "heartbeat of \(request.name)") }
        return true
    }

    public func leave(name: String) async throws(ClusterError) {
        let response = try await call(BatonProtocol.Placement.leave, body: LeaveRequest(name: name))
        guard response.status == 200 || response.status == 404 else { throw refusal(response, doing: "leaving as \(name)") }
    }

    /// Where a prompt of `promptTokens` tokens should run. A refusal throws `.overloaded` (with its retry
    /// delay) or `.unavailable`.
    public func choose(promptTokens: Int) async throws(ClusterError) -> ChooseResponse {
        let response = try await call(BatonProtocol.Placement.choose, body: ChooseRequest(promptTokens: promptTokens))
        guard response.status == 200 else { throw refusal(response, doing: "choosing workers") }
        return try decode(ChooseResponse.self, response)
    }

    /// What `choose` would answer for a prompt of `promptTokens` tokens, and why; chooses nothing.
    public func explain(promptTokens: Int) async throws(ClusterError) -> ExplainResponse {
        let response = try await call(BatonProtocol.Placement.explain, body: ChooseRequest(promptTokens: promptTokens))
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
            let client = try await pool.client(host: host, port: port)
            return try await client.call(path, method: method, body: body, timeout: timeout)
        } catch {
            let code: ClusterError.Code = error.code == .timeout ? .timeout : .unavailable
            throw ClusterError(code, "placement service at \(host):\(port) did not answer \(path): \(error.message)", cause: error)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: NodeResponse) throws(ClusterError) -> T {
        do { return try PlacementJSON.decode(type, from: response.body) } catch {
            throw ClusterError(.protocolViolation, "placement service at \(host):\(port) sent an unreadable \(T.self)", cause: error)
        }
    }

    private func refusal(_ response: NodeResponse, doing what: String) -> ClusterError {
        let body = try? PlacementJSON.decode(PlacementRefusal.self, from: response.body)
        let message = body?.message ?? (response.bodyText.isEmpty ? "HTTP \(response.status)" : response.bodyText)
        let code: ClusterError.Code =
            switch response.status {
            case 429: .overloaded
            case 503: .unavailable
            case 400..<500: .rejected
            default: .internalError
            }
        return ClusterError(code, "\(what): \(message)", retryAfterSeconds: body?.retryAfterSeconds)
    }
}
