/// Everything the router needs to know that is not the tokenizer, the template or the backend.
///
/// Defaults suit `baton up` on one box with the default model.
public struct RouterConfiguration: Sendable, Equatable {
    /// Interface to listen on. Default `127.0.0.1`.
    public var host: String
    /// TCP port; 0 picks a free one. Default 8080.
    public var port: Int
    /// The model id clients must send as `model` and that `GET /v1/models` lists. Default `"baton"`.
    public var modelID: String
    /// Context window in tokens: prompt plus output must fit. Default 2048 (SmolLM2-135M's is 8192; the
    /// cluster usually serves less).
    public var contextLength: Int
    /// Output tokens when the request sets neither `max_tokens` nor `max_completion_tokens`. Default 256.
    public var defaultMaxTokens: Int
    /// File of bearer API keys, one per line (`#` comments and blank lines allowed). Nil: no authentication.
    public var apiKeysFile: String?
    /// Longest a request may take end to end before it is cancelled. Default 600 seconds.
    public var requestTimeout: Duration
    /// Largest request body accepted, in bytes. Default 8 MiB.
    public var maxBodyBytes: Int
    /// `owned_by` in `GET /v1/models`. Default `"baton"`.
    public var ownedBy: String
    /// A client connection with no request in progress (waiting for a request head, or kept alive between
    /// requests) is closed after this long. Default 30 seconds.
    public var idleConnectionTimeout: Duration
    /// A connection must deliver each whole request, head and body, within this of being ready for it (opened,
    /// or the previous response sent); a client dribbling bytes cannot hold it longer. Default 30 seconds.
    public var requestReadTimeout: Duration
    /// Open client connections in all; more are closed on accept. Default 1024.
    public var maximumConnections: Int
    /// Open connections from one client IP address. Default 256 (a benchmark's clients share one address).
    public var maximumConnectionsPerClient: Int

    public init(
        host: String = "127.0.0.1", port: Int = 8080, modelID: String = "baton", contextLength: Int = 2048,
        defaultMaxTokens: Int = 256, apiKeysFile: String? = nil, requestTimeout: Duration = .seconds(600),
        maxBodyBytes: Int = 8 << 20, ownedBy: String = "baton", idleConnectionTimeout: Duration = .seconds(30),
        requestReadTimeout: Duration = .seconds(30), maximumConnections: Int = 1024, maximumConnectionsPerClient: Int = 256
    ) {
        self.idleConnectionTimeout = idleConnectionTimeout
        self.requestReadTimeout = requestReadTimeout
        self.maximumConnections = maximumConnections
        self.maximumConnectionsPerClient = maximumConnectionsPerClient
        self.host = host
        self.port = port
        self.modelID = modelID
        self.contextLength = contextLength
        self.defaultMaxTokens = defaultMaxTokens
        self.apiKeysFile = apiKeysFile
        self.requestTimeout = requestTimeout
        self.maxBodyBytes = maxBodyBytes
        self.ownedBy = ownedBy
    }

    /// Throws ``RouterError/Code/invalidConfiguration`` naming the setting when a value cannot work.
    public func validate() throws(RouterError) {
        func fail(_ key: String, _ reason: String) -> RouterError {
            RouterError(.invalidConfiguration, "router configuration: \(key) \(reason)")
        }
        guard (0...65535).contains(port) else { throw fail("port", "must be in 0...65535, got \(port)") }
        guard !modelID.isEmpty else { throw fail("modelID", "must not be empty") }
        guard contextLength > 1 else { throw fail("contextLength", "must be at least 2, got \(contextLength)") }
        guard defaultMaxTokens >= 1 else { throw fail("defaultMaxTokens", "must be at least 1, got \(defaultMaxTokens)") }
        guard requestTimeout > .zero else { throw fail("requestTimeout", "must be positive") }
        guard maxBodyBytes >= 1024 else { throw fail("maxBodyBytes", "must be at least 1024, got \(maxBodyBytes)") }
        guard idleConnectionTimeout > .zero else { throw fail("idleConnectionTimeout", "must be positive") }
        guard requestReadTimeout > .zero else { throw fail("requestReadTimeout", "must be positive") }
        guard maximumConnections >= 1 else { throw fail("maximumConnections", "must be at least 1, got \(maximumConnections)") }
        guard (1...maximumConnections).contains(maximumConnectionsPerClient) else {
            throw fail("maximumConnectionsPerClient", "must be in 1...maximumConnections (\(maximumConnections)), got \(maximumConnectionsPerClient)")
        }
    }
}
