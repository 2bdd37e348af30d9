import Foundation
import Testing
@testable import Placement

@Suite("Placement policy files")
struct PlacementPolicyTests {
    @Test("an empty file gives the documented defaults")
    func emptyFileGivesDefaults() throws {
        let policy = try PlacementPolicy.parse(yaml: "", file: "empty.yaml")
        #expect(policy.prefill == PlacementPolicy.Pool())
        #expect(policy.scoring.prefill == .init(compute: 1, bandwidth: 0, load: 0.5))
        #expect(policy.scoring.decode == .init(compute: 0, bandwidth: 1, load: 0.5))
        #expect(policy.scoring.linkWeight == 0.3)
        #expect(policy.scoring.linkCosts.cost(.sharedMemory) < policy.scoring.linkCosts.cost(.rdma))
        #expect(policy.scoring.linkCosts.cost(.rdma) < policy.scoring.linkCosts.cost(.tcp))
        #expect(policy.balancing.strategy == .leastLoaded)
        #expect(policy.balancing.seed == nil)
        #expect(policy.disaggregation.minPromptTokens == 64)
        #expect(policy.disaggregation.fallbackToDecodeOnly)
        #expect(policy.slo.ttftMs == 2000)
        #expect(policy.slo.tpotMs == 200)
        #expect(policy.slo.maxQueueDepth == 4)
        #expect(policy.admission.policy == .queue && policy.admission.maxWaiting == 256 && policy.admission.maxWaitSeconds == 300)
        #expect(policy.membership.heartbeatTimeoutSeconds == 10)
        #expect(policy.resume.maxMigrations == 3)
    }

    @Test("every key is read, byte sizes take units, and unset keys keep their defaults")
    func everyKeyIsRead() throws {
        let yaml = """
            prefill:
              min_gflops: 150
              min_bandwidth_gbps: 5
              min_free_memory: 2GiB
              labels: {box: compute}
              workers: [a, b]
              exclude_workers: [c]
            decode:
              min_free_memory: 1073741824
            scoring:
              prefill: {compute: 2}
              decode: {bandwidth: 3, load: 1}
              link_weight: 0.5
              link_cost: {shared_memory: 0.1, rdma: 0.2, tcp: 2}
            balancing: {strategy: power_of_two, seed: 7}
            disaggregation: {min_prompt_tokens: 300, fallback_to_decode_only: false}
            slo: {ttft_ms: 500, tpot_ms: 50, max_queue_depth: 4, retry_after_seconds: 3}
            membership: {heartbeat_timeout_seconds: 2.5}
            resume: {max_migrations: 0}
            """
        let policy = try PlacementPolicy.parse(yaml: yaml, file: "full.yaml")
        #expect(policy.prefill.minGFLOPS == 150)
        #expect(policy.prefill.minBandwidthGBps == 5)
        #expect(policy.prefill.minFreeMemoryBytes == 2 << 30)
        #expect(policy.prefill.labels == ["box": "compute"])
        #expect(policy.prefill.workers == ["a", "b"])
        #expect(policy.prefill.excludeWorkers == ["c"])
        #expect(policy.decode.minFreeMemoryBytes == 1 << 30)
        #expect(policy.scoring.prefill == .init(compute: 2, bandwidth: 0, load: 0.5))
        #expect(policy.scoring.decode == .init(compute: 0, bandwidth: 3, load: 1))
        #expect(policy.scoring.linkWeight == 0.5)
        #expect(policy.scoring.linkCosts.tcp == 2)
        #expect(policy.balancing.strategy == .powerOfTwo)
        #expect(policy.balancing.seed == 7)
        #expect(policy.disaggregation.minPromptTokens == 300)
        #expect(!policy.disaggregation.fallbackToDecodeOnly)
        #expect(policy.slo.ttftMs == 500 && policy.slo.tpotMs == 50)
        #expect(policy.slo.maxQueueDepth == 4 && policy.slo.retryAfterSeconds == 3)
        #expect(policy.membership.heartbeatTimeoutSeconds == 2.5)
        #expect(policy.resume.maxMigrations == 0)
    }

    @Test("an unknown key names file, line, column and key, and suggests the close one")
    func unknownKeySuggests() {
        let yaml = "prefill:\n  min_gflops: 10\n  min_gflop: 20\n"
        let error = placementError { _ = try PlacementPolicy.parse(yaml: yaml, file: "p.yaml") }
        #expect(error?.code == .invalidConfig)
        #expect(error?.location == .init(file: "p.yaml", line: 3, column: 3, key: "prefill.min_gflop"))
        #expect(error?.description
            == "invalid config: p.yaml:3:3: prefill.min_gflop: unknown key 'min_gflop'; did you mean 'min_gflops'?")
    }

    @Test("an unknown top-level key with nothing close lists the allowed keys")
    func unknownKeyListsAllowed() {
        let error = placementError { _ = try PlacementPolicy.parse(yaml: "zzzzzz: 1\n", file: "p.yaml") }
        #expect(error?.location?.key == "zzzzzz")
        #expect(error?.message.contains("allowed keys: prefill, decode, scoring") == true)
    }

    @Test("a key missing its unit suffix is pointed at the right one")
    func missingSuffixSuggests() {
        let error = placementError { _ = try PlacementPolicy.parse(yaml: "slo:\n  ttft: 5\n", file: "p.yaml") }
        #expect(error?.description == "invalid config: p.yaml:2:3: slo.ttft: unknown key 'ttft'; did you mean 'ttft_ms'?")
    }

    @Test("a wrong type names the key and what was expected")
    func wrongType() {
        let yaml = "slo:\n  ttft_ms: fast\n"
        let error = placementError { _ = try PlacementPolicy.parse(yaml: yaml, file: "p.yaml") }
        #expect(error?.location == .init(file: "p.yaml", line: 2, column: 12, key: "slo.ttft_ms"))
        #expect(error?.message == "expected a number, found a scalar (\"fast\")")
    }

    @Test("an out-of-range value names the accepted range")
    func outOfRange() {
        let yaml = "slo:\n  max_queue_depth: 0\n"
        let error = placementError { _ = try PlacementPolicy.parse(yaml: yaml, file: "p.yaml") }
        #expect(error?.location?.key == "slo.max_queue_depth")
        #expect(error?.location?.line == 2)
        #expect(error?.message == "0 is out of range 1...1000000")
        let migrations = placementError { _ = try PlacementPolicy.parse(yaml: "resume:\n  max_migrations: 101\n", file: "p.yaml") }
        #expect(migrations?.location?.key == "resume.max_migrations")
        #expect(migrations?.message == "101 is out of range 0...100")
    }

    @Test("a misspelled strategy is refused with a suggestion")
    func misspelledStrategy() {
        let error = placementError {
            _ = try PlacementPolicy.parse(yaml: "balancing:\n  strategy: least_loadd\n", file: "p.yaml")
        }
        #expect(error?.location?.key == "balancing.strategy")
        #expect(error?.message == "'least_loadd' is not one of least_loaded, power_of_two, round_robin; did you mean 'least_loaded'?")
    }

    @Test("a section given as a scalar is a type error at that key")
    func sectionAsScalar() {
        let error = placementError { _ = try PlacementPolicy.parse(yaml: "decode: 5\n", file: "p.yaml") }
        #expect(error?.location?.key == "decode")
        #expect(error?.message == "expected a mapping, found a scalar (\"5\")")
    }

    @Test("bad byte sizes, unordered link costs and contradictory worker lists are refused")
    func semanticErrors() {
        let bytes = placementError { _ = try PlacementPolicy.parse(yaml: "decode: {min_free_memory: 3 lots}", file: "p") }
        #expect(bytes?.location?.key == "decode.min_free_memory")
        let costs = placementError {
            _ = try PlacementPolicy.parse(yaml: "scoring:\n  link_cost: {rdma: 2, tcp: 1}\n", file: "p")
        }
        #expect(costs?.location?.key == "scoring.link_cost")
        #expect(costs?.message.hasPrefix("link costs must be ordered") == true)
        let lists = placementError {
            _ = try PlacementPolicy.parse(yaml: "prefill: {workers: [a], exclude_workers: [a]}", file: "p")
        }
        #expect(lists?.location?.key == "prefill.exclude_workers")
    }

    @Test("YAML syntax errors and duplicate keys carry a line")
    func syntaxErrors() {
        let syntax = placementError { _ = try PlacementPolicy.parse(yaml: "prefill:\n  labels: {a: [\n", file: "s.yaml") }
        #expect(syntax?.code == .invalidConfig)
        #expect(syntax?.location?.file == "s.yaml")
        #expect(syntax?.location?.line != nil)
        let duplicate = placementError { _ = try PlacementPolicy.parse(yaml: "slo: {}\nslo: {}\n", file: "d.yaml") }
        #expect(duplicate?.location?.key == "slo")
        #expect(duplicate?.location?.line != nil)
    }

    @Test("a missing file is an I/O error naming it")
    func missingFile() {
        let error = placementError { _ = try PlacementPolicy.load(path: "/nonexistent/policy.yaml") }
        #expect(error?.code == .io)
        #expect(error?.location?.file == "/nonexistent/policy.yaml")
    }

    @Test("every shipped example policy and worker file is valid")
    func shippedExamplesParse() throws {
        let config = repositoryRoot.appendingPathComponent("Deploy/config")
        let reference = try PlacementPolicy.load(path: config.appendingPathComponent("policy.yaml").path)
        #expect(reference.prefill == PlacementPolicy().prefill)
        #expect(reference.scoring == PlacementPolicy().scoring)
        #expect(reference.slo == PlacementPolicy().slo)
        #expect(reference.resume == PlacementPolicy().resume)
        #expect(reference.admission == PlacementPolicy().admission)
        let examples = config.appendingPathComponent("policy-examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 2)
        for file in files { _ = try PlacementPolicy.load(path: examples.appendingPathComponent(file).path) }
        let workers = config.appendingPathComponent("workers")
        let compute = try WorkerConfig.load(path: workers.appendingPathComponent("compute-box.yaml").path)
        let bandwidth = try WorkerConfig.load(path: workers.appendingPathComponent("bandwidth-box.yaml").path)
        #expect(compute.declaredProfile.sgemmGFLOPS! > bandwidth.declaredProfile.sgemmGFLOPS!)
        #expect(compute.declaredProfile.memoryReadGBps! < bandwidth.declaredProfile.memoryReadGBps!)
        let state = try ClusterState.declared(workerFiles: [workers.appendingPathComponent("cluster.yaml").path])
        #expect(state.workers.count == 3)
    }
}
