import RPC
import Cluster
import Foundation
import Logging
import Placement
import Synchronization
import Testing

/// The test cluster's CA, made in memory once per test process.
private let testAuthority = Result { () throws(RPCError) in try ClusterCertificates.makeAuthority(name: "Baton test CA") }

/// TLS settings for `node` in the test cluster (certificate issued by the shared in-memory CA).
func clusterTLS(_ node: String) throws -> NodeTLS {
    let authority = try testAuthority.get()
    return ClusterCertificates.tls(node: try ClusterCertificates.issueNode(node, authority: authority),
                                   authorityPEM: authority.certificatePEM)
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

    /// A client holding a certificate of the test cluster.
    func client(node: String = "router", timeout: Duration = .seconds(5)) throws -> PlacementClient {
        PlacementClient(host: "127.0.0.1", port: port, tls: try clusterTLS(node), timeout: timeout)
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
    let client = try await NodeClient.connect(host: "127.0.0.1", port: port, tls: try clusterTLS(node))
    do {
        let response = try await client.call(path, method: method, body: body, timeout: .seconds(5))
        await client.close()
        return response
    } catch {
        await client.close()
        throw error
    }
}
