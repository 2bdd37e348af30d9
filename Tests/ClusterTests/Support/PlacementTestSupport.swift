import RPC
import Cluster
import Foundation
import Logging
import Placement
import Synchronization
import Testing

/// The test cluster's CA, made in memory once per test process.
private let testAuthority = Result { () throws(RPCError) in try ClusterCertificates.makeAuthority(name: "Baton test CA") }

/// TLS settings for `node` acting in `roles` in the test cluster (certificate issued by the shared in-memory CA).
/// Without roles: "router" and "placement" get their own role, any other name is a prefill and decode worker.
func clusterTLS(_ node: String, roles: Set<NodeRole>? = nil) throws -> NodeTLS {
    let authority = try testAuthority.get()
    let roles = roles ?? (node == "router" ? [.router] : node == "placement" ? [.placement] : [.prefill, .decode])
    return ClusterCertificates.tls(node: try ClusterCertificates.issueNode(node, roles: roles, authority: authority),
                                   authorityPEM: authority.certificatePEM)
}

/// The cluster as tests drive it: workers register, heartbeat and leave each with its own certificate (as the
/// placement service demands), `choose` and `status` go out as the router.
final class ClusterClients: Sendable {
    let port: Int
    let timeout: Duration
    let router: PlacementClient
    private let workers = Mutex<[String: PlacementClient]>([:])

    init(port: Int, timeout: Duration) throws {
        self.port = port
        self.timeout = timeout
        router = PlacementClient(host: "127.0.0.1", port: port, tls: try clusterTLS("router"), timeout: timeout)
    }

    private func worker(_ name: String) throws -> PlacementClient {
        if let client = workers.withLock({ $0[name] }) { return client }
        let client = PlacementClient(host: "127.0.0.1", port: port, tls: try clusterTLS(name), timeout: timeout)
        workers.withLock { $0[name] = client }
        return client
    }

    func register(_ request: RegisterRequest) async throws -> RegisterResponse {
        try await worker(request.profile.name).register(request)
    }

    /// Whether the service knows the worker.
    func heartbeat(_ request: HeartbeatRequest) async throws -> Bool {
        try await worker(request.name).heartbeat(request) != nil
    }

    func leave(name: String, incarnation: String? = nil) async throws {
        try await worker(name).leave(name: name, incarnation: incarnation)
    }

    func explain(promptTokens: Int) async throws -> ExplainResponse {
        try await router.explain(promptTokens: promptTokens)
    }

    /// The membership watch, as a router opens it.
    func watch() async throws -> MembershipWatchStream {
        try await router.watch()
    }

    func choose(promptTokens: Int, excluding: [String] = []) async throws -> ChooseResponse {
        try await router.choose(promptTokens: promptTokens, excluding: excluding)
    }

    func status() async throws -> ClusterStatus {
        try await router.status()
    }

    func close() async {
        await router.close()
        for client in workers.withLock({ Array($0.values) }) { await client.close() }
    }
}

/// A logger that drops everything: services under test would otherwise fill the test output.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// A fresh empty folder under the system temporary directory.
func makeTemporaryFolder(_ prefix: String = "cluster-tests") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A placement service on 127.0.0.1 with mutual TLS, running in a task, plus what tests need around it.
/// `stop()` before the test ends.
final class PlacementHarness: Sendable {
    let service: PlacementService
    let stateDirectory: String
    let policyFile: String?
    private let runner: Task<Void, Never>

    var port: Int { service.port }

    /// Starts a service on `port` (0: any free port) with `stateDirectory` (default: a new temporary
    /// folder) and, when `policy` is given, a policy file holding it.
    static func start(policy: String? = nil, stateDirectory: String? = nil, port: Int = 0,
                      pollInterval: Duration = .milliseconds(100)) async throws -> PlacementHarness {
        let folder = try stateDirectory ?? makeTemporaryFolder("placement-service")
        var policyFile: String?
        if let policy {
            let path = folder + "/policy.yaml"
            try Data(policy.utf8).write(to: URL(fileURLWithPath: path))
            policyFile = path
        }
        var configuration = PlacementService.Configuration(stateDirectory: folder, policyFile: policyFile,
                                                           tls: try clusterTLS("placement"))
        configuration.port = port
        configuration.policyPollInterval = pollInterval
        let service = try await PlacementService.start(configuration, logger: quietLogger)
        return PlacementHarness(service: service, stateDirectory: folder, policyFile: policyFile)
    }

    private init(service: PlacementService, stateDirectory: String, policyFile: String?) {
        self.service = service
        self.stateDirectory = stateDirectory
        self.policyFile = policyFile
        runner = Task { await service.serve() }
    }

    /// Clients for the router and for each worker a test registers.
    func client(timeout: Duration = .seconds(5)) throws -> ClusterClients {
        try ClusterClients(port: port, timeout: timeout)
    }

    /// A client holding node `node`'s certificate of the test cluster.
    func client(node: String, roles: Set<NodeRole>? = nil, timeout: Duration = .seconds(5)) throws -> PlacementClient {
        PlacementClient(host: "127.0.0.1", port: port, tls: try clusterTLS(node, roles: roles), timeout: timeout)
    }

    /// Stops the service: closes the listener, then `clients` (whose open connections would otherwise keep
    /// being served), and waits up to 10 s for the service to stop serving.
    func stop(closing clients: [PlacementClient] = []) async {
        await service.close()
        for client in clients { await client.close() }
        runner.cancel()
        let stopped = Mutex(false)
        let runner = runner
        Task {
            await runner.value
            stopped.withLock { $0 = true }
        }
        if !(await eventually(timeout: .seconds(10)) { stopped.withLock { $0 } }) { Issue.record("the placement service still serves a connection 10 s after close") }
    }

    /// Stops the service (see `stop`) and removes its state folder.
    func stopAndRemove(closing clients: [PlacementClient] = []) async {
        await stop(closing: clients)
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    func stopAndRemove(closing clients: [ClusterClients]) async {
        for client in clients { await client.close() }
        await stopAndRemove()
    }
}

/// A registration as a worker sends it.
func registration(_ name: String, roles: [WorkerRole] = [.prefill, .decode], gflops: Double = 100, gbps: Double = 20,
                  port: Int = 7411, host: String = "127.0.0.1", fingerprint: String = "model-a",
                  labels: [String: String] = [:]) -> RegisterRequest {
    let profile = DeviceProfile(name: name, sgemmGFLOPS: gflops, memoryReadGBps: gbps, memoryTotalBytes: 16 << 30,
                                memoryFreeBytes: 8 << 30, cores: 4,
                                transports: .init(rdmaDevices: [], sharedMemoryHostID: "host-\(name)"), labels: labels)
    return RegisterRequest(profile: profile, roles: roles, address: WorkerAddress(host: host, port: port, hostID: "host-\(name)"),
                           modelFingerprint: fingerprint)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Sends raw bytes to a placement path and returns the HTTP answer (for status codes and bodies the typed
/// client hides).
func rawCall(port: Int, path: String, method: String = "POST", body: [UInt8], node: String = "router") async throws -> NodeResponse {
    let client = try await NodeClient.connect(
        host: "127.0.0.1", port: port, tls: try clusterTLS(node), expecting: .role(.placement))
    do {
        let response = try await client.call(path, method: method, body: body, timeout: .seconds(5))
        await client.close()
        return response
    } catch {
        await client.close()
        throw error
    }
}
