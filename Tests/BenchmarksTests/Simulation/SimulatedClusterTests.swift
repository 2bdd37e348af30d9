import Benchmarks
import Placement
import Testing

@Suite("Simulated cluster files")
struct SimulatedClusterTests {
    @Test("An entry with a count becomes that many workers, each on its own host unless shared_host is set")
    func countsAndHosts() throws {
        let cluster = try SimulatedCluster.parse(yaml: """
            heartbeat_interval_ms: 500
            workers:
              - name: fast
                count: 3
                role: prefill
                labels: {box: compute}
                profile: {sgemm_gflops: 400, memory_read_gbps: 20, host_id: rack}
                link: {bandwidth_gbps: 3, latency_ms: 0.5}
              - name: big
                count: 2
                role: decode
                shared_host: true
                profile: {sgemm_gflops: 100, memory_read_gbps: 80, host_id: one}
                max_batch: 32
                kv_blocks: 4096
            """, file: "c.yaml")
        #expect(cluster.heartbeatIntervalSeconds == 0.5)
        #expect(cluster.workers.map(\.profile.name) == ["fast-1", "fast-2", "fast-3", "big-1", "big-2"])
        #expect(cluster.workers.map(\.profile.transports.sharedMemoryHostID) == ["rack-1", "rack-2", "rack-3", "one", "one"])
        #expect(cluster.workers[0].roles == [.prefill] && cluster.workers[3].roles == [.decode])
        #expect(cluster.workers[0].profile.labels == ["box": "compute"])
        #expect(cluster.workers[0].link == LinkProfile(bandwidthGBps: 3, latencySeconds: 0.0005))
        #expect(cluster.workers[4].maxBatch == 32 && cluster.workers[4].kvBlocks == 4096 && cluster.workers[0].kvBlocks == nil)
    }

    @Test("Bad cluster files are refused with the file, line and key")
    func badFiles() {
        let cases: [(String, String)] = [
            ("workers:\n  - name: a\n    profile: {sgemm_gflops: 1, memory_read_gbps: 1}\n    max_batchh: 4\n",
             "c.yaml:4:5: workers[0].max_batchh: unknown key 'max_batchh'"),
            ("workers:\n  - name: a\n    profile: {memory_read_gbps: 1}\n",
             "c.yaml:3:14: workers[0].profile: worker 'a' needs profile.sgemm_gflops"),
            ("workers:\n  - name: a\n    count: 0\n    profile: {sgemm_gflops: 1, memory_read_gbps: 1}\n",
             "c.yaml:3:12: workers[0].count:"),
            ("workers:\n  - name: a\n    role: router\n    profile: {sgemm_gflops: 1, memory_read_gbps: 1}\n",
             "c.yaml:3:11: workers[0].role:"),
            ("workers:\n  - {name: a, profile: {sgemm_gflops: 1, memory_read_gbps: 1}}\n  - {name: a, profile: {sgemm_gflops: 1, memory_read_gbps: 1}}\n",
             "workers[1]: worker name 'a' is used twice"),
            ("heartbeat_interval_ms: 5\nworkers: []\n", "c.yaml:1:24: heartbeat_interval_ms:"),
            ("workers: []\n", "workers: the cluster has no workers"),
            ("nodes: []\n", "unknown key 'nodes'"),
            ("workers:\n  - config: missing.yaml\n", "missing.yaml: cannot read config file"),
            ("workers:\n  - name: a\n    profile: {sgemm_gflops: 1, memory_read_gbps: 1}\n    kv_blocks: 2\n",
             "workers[0].kv_blocks: kv_blocks 2 cannot hold one full context of 4096 tokens"),
        ]
        for (yaml, expected) in cases {
            #expect {
                try SimulatedCluster.parse(yaml: yaml, file: "c.yaml", directory: "/nonexistent")
            } throws: { error in
                let text = "\(error)"
                if !text.contains(expected) { Issue.record("\(text) does not contain \(expected)") }
                return (error as? PlacementError)?.code == .invalidConfig || (error as? PlacementError)?.code == .io
            }
        }
    }
}
