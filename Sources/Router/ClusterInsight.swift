/// What the router's page shows of the cluster behind it: placement's view of the members and its explanation of
/// a choice. Implemented by the executable over the placement client (the router knows nothing of the cluster's
/// types, so both answers are JSON documents, passed to the page as they are); absent for `baton serve`, where the
/// page's cluster view says there is no cluster.
///
/// Implementations must be safe to call concurrently; each call asks placement afresh.
public protocol ClusterInsight: Sendable {
    /// Placement's `GET /v1/cluster/status` body (workers, policy, membership events), as JSON.
    func statusJSON() async throws(RouterError) -> [UInt8]

    /// Placement's `POST /v1/placement/explain` answer for a prompt of `promptTokens` tokens (`decision`: every
    /// candidate's score, with what its caches hold of `prompt` when the token ids are given, and reasons; `text`: as
    /// `baton placement explain` prints it), as JSON.
    func explainJSON(promptTokens: Int, prompt: [Int32]?) async throws(RouterError) -> [UInt8]
}
