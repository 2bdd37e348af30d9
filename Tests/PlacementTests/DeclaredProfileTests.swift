import Foundation
import Testing
@testable import Placement

@Suite("Declared profiles and worker configs")
struct DeclaredProfileTests {
    @Test("declared fields override measured ones and labels merge")
    func declaredOverrides() {
        let measured = profile("box", gflops: 95, gbps: 21, labels: ["zone": "a", "box": "generic"])
        let declared = DeclaredProfile(sgemmGFLOPS: 400, memoryFreeBytes: 1 << 30, rdmaDevices: ["mlx5_0"],
                                       sharedMemoryHostID: "sim-1", labels: ["box": "compute"])
        let result = measured.applying(declared)
        #expect(result.sgemmGFLOPS == 400)
        #expect(result.memoryReadGBps == 21)
        #expect(result.memoryFreeBytes == 1 << 30)
        #expect(result.memoryTotalBytes == measured.memoryTotalBytes)
        #expect(result.transports.rdmaDevices == ["mlx5_0"])
        #expect(result.transports.sharedMemoryHostID == "sim-1")
        #expect(result.labels == ["zone": "a", "box": "compute"])
    }

    @Test("a worker config's declared profile, role, labels and cache settings are read")
    func workerConfig() throws {
        let yaml = """
            name: compute-box
            role: prefill
            threads: 2
            labels: {box: compute}
            profile: {sgemm_gflops: 400, memory_free: 48GiB, memory_total: 64GiB, host_id: a}
            profile_cache: {path: /tmp/p.json, max_age_seconds: 60}
            listen: 0.0.0.0:9000
            """
        let config = try WorkerConfig.parse(yaml: yaml, file: "w.yaml", additionalKeys: ["listen"])
        #expect(config.name == "compute-box")
        #expect(config.roles == [.prefill])
        #expect(config.threads == 2)
        #expect(config.declaredProfile.sgemmGFLOPS == 400)
        #expect(config.declaredProfile.memoryFreeBytes == 48 << 30)
        #expect(config.declaredProfile.labels == ["box": "compute"])
        #expect(config.profileCachePath == "/tmp/p.json")
        #expect(config.profileCacheMaxAge == 60)
        let unknown = placementError { _ = try WorkerConfig.parse(yaml: yaml, file: "w.yaml") }
        #expect(unknown?.location == .init(file: "w.yaml", line: 7, column: 1, key: "listen"))
        let bad = placementError { _ = try WorkerConfig.parse(yaml: "name: x\nrole: prefil\n", file: "w.yaml") }
        #expect(bad?.message == "'prefil' is not one of prefill, decode, both; did you mean 'prefill'?")
        let nameless = placementError { _ = try WorkerConfig.parse(yaml: "role: both\n", file: "w.yaml") }
        #expect(nameless?.message == "'name' is required")
        let tooFree = placementError {
            _ = try WorkerConfig.parse(yaml: "name: x\nprofile: {memory_total: 1GiB, memory_free: 2GiB}\n", file: "w")
        }
        #expect(tooFree?.location?.key == "profile.memory_free")
    }

    @Test("byte counts parse with binary and decimal units")
    func byteCounts() {
        #expect(ByteCount.parse("512MiB") == 512 << 20)
        #expect(ByteCount.parse("8 GiB") == 8 << 30)
        #expect(ByteCount.parse("2GB") == 2_000_000_000)
        #expect(ByteCount.parse("1.5k") == 1536)
        #expect(ByteCount.parse("12 parsecs") == nil)
        #expect(ByteCount.parse("GiB") == nil)
    }

    @Test("profiles round-trip through JSON with snake_case keys")
    func profileJSON() throws {
        let original = profile("p", rdma: ["mlx5_0"], labels: ["a": "b"])
        let data = try JSONEncoder().encode(original)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"sgemm_gflops\""))
        #expect(text.contains("\"shared_memory_host_id\""))
        #expect(try JSONDecoder().decode(DeviceProfile.self, from: data) == original)
    }
}
