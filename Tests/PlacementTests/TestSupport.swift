import Foundation
@testable import Placement

/// A fresh empty folder under the system temporary directory.
func temporaryFolder() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("placement-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The repository root, found from this file's real location (the test folder may be reached through a symlink).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func profile(_ name: String, gflops: Double = 100, gbps: Double = 20, free: Int = 8 << 30, host: String? = nil,
             rdma: [String] = [], labels: [String: String] = [:]) -> DeviceProfile {
    DeviceProfile(name: name, sgemmGFLOPS: gflops, memoryReadGBps: gbps, memoryTotalBytes: 16 << 30,
                  memoryFreeBytes: free, cores: 4,
                  transports: .init(rdmaDevices: rdma, sharedMemoryHostID: host ?? "host-\(name)"), labels: labels)
}

let epoch = Date(timeIntervalSince1970: 1_000_000)

/// A cluster built by applying joined (+ heartbeat) events.
func cluster(_ workers: [(DeviceProfile, [WorkerRole], WorkerLoad)]) -> ClusterState {
    var state = ClusterState()
    for (profile, roles, load) in workers {
        state.apply(.joined(profile: profile, roles: roles, at: epoch))
        state.apply(.heartbeat(worker: profile.name, load: load, at: epoch))
    }
    return state
}

/// Runs `body` expecting a `PlacementError` and returns it.
func placementError(_ body: () throws -> Void) -> PlacementError? {
    do {
        try body()
        return nil
    } catch let error as PlacementError {
        return error
    } catch {
        return nil
    }
}
