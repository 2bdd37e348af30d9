import Cluster
import Router

/// The router page's view of the cluster: placement's status and explanations, asked afresh each time.
struct PlacementInsight: ClusterInsight {
    let placement: PlacementClient

    func statusJSON() async throws(RouterError) -> [UInt8] {
        let status: ClusterStatus
        do { status = try await placement.status() } catch { throw Self.routerError(error) }
        return try Self.encode(status)
    }

    func explainJSON(promptTokens: Int, prompt: [Int32]?) async throws(RouterError) -> [UInt8] {
        let explanation: ExplainResponse
        do { explanation = try await placement.explain(promptTokens: promptTokens, prompt: prompt) } catch {
            throw Self.routerError(error)
        }
        return try Self.encode(explanation)
    }

    private static func encode(_ value: some Encodable) throws(RouterError) -> [UInt8] {
        do { return try PlacementJSON.encode(value) } catch {
            throw RouterError(.internalError, "cannot encode placement's answer: \(error)", cause: error)
        }
    }

    /// Placement unreachable or refusing is the cluster being unavailable; the page shows the message.
    private static func routerError(_ error: ClusterError) -> RouterError {
        switch error.code {
        case .invalidArgument, .rejected: RouterError(.invalidParameter, error.message, cause: error)
        case .timeout: RouterError(.timeout, error.message, cause: error)
        default: RouterError(.noWorkerAvailable, error.message, cause: error)
        }
    }
}
