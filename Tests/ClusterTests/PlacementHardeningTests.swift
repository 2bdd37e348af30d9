import ClusterProtocol
import Cluster
import Foundation
import Placement
import RPC
import Testing

/// Placement under hostile input: figures outside physical ranges, oversized labels and prompts, the wrong
/// model, and a membership log damaged on disk.
@Suite("Placement hardening")
struct PlacementHardeningTests {
    @Test("profiles outside physical ranges and oversized labels are refused with the field and its range")
    func profileRanges() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        let cases: [(RegisterRequest, String)] = [
            (registration("fast", gflops: 1e30), "worker fast's profile: sgemm_gflops 1e+30 is outside 0.001...1000000.0"),
            (registration("neg", gbps: -5), "worker neg's profile: memory_read_gbps -5.0 is outside 0.001...100000.0"),
            (registration("many", labels: Dictionary(uniqueKeysWithValues: (0..<40).map { ("k\($0)", "v") })),
             "worker many's profile: 40 labels, at most 32 allowed"),
            (registration("big", labels: ["note": String(repeating: "x", count: 2 << 20)]),
             "worker big's profile: label note has a 2097152-byte value, at most 256 allowed"),
        ]
        for (request, message) in cases {
            let error = await #expect(throws: ClusterError.self) { try await client.register(request) }
            #expect(error?.code == .rejected)
            #expect(error?.message == "registering \(request.profile.name): \(message)")
        }
        #expect(try await client.status().workers.isEmpty)
        #expect(try await client.status().events == 0, "nothing refused reached the membership log")
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("choose refuses prompt_tokens past the cap or past every worker's context")
    func promptTokensWithinContext() async throws {
        let harness = try await PlacementHarness.start()
        let client = try harness.client()
        var worker = registration("w", roles: [.decode])
        worker.contextLength = 2048
        _ = try await client.register(worker)
        _ = try await client.choose(promptTokens: 2000)
        let past = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 2048) }
        #expect(past?.message.contains("prompt_tokens 2048 leaves no room in the longest worker context (2048 tokens)") == true)
        let huge = await #expect(throws: ClusterError.self) { try await client.choose(promptTokens: 1 << 62) }
        #expect(huge?.message.contains("exceeds 16777216") == true)
        await client.close()
        await harness.stopAndRemove()
    }

    @Test("a flipped byte in the middle of the membership log: placement starts, skips that record with a warning, compacts")
    func damagedLogStart() async throws {
        let first = try await PlacementHarness.start()
        let client = try first.client()
        for name in ["a", "b", "c"] { _ = try await client.register(registration(name, roles: [.decode])) }
        await client.close()
        await first.stop()

        let path = first.service.configuration.membershipLogPath
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // Register events: joined + role assigned per worker, so line 3 is b's join. Flip a byte inside it.
        let offset = lines[0].count + 1 + lines[1].count + 1 + 20
        bytes[offset] ^= 0x20
        try bytes.write(to: URL(fileURLWithPath: path))

        let second = try await PlacementHarness.start(stateDirectory: first.stateDirectory)
        let again = try second.client()
        let names = try await again.status().workers.map(\.name)
        #expect(names.contains("a") && names.contains("c"))
        let compacted = try String(contentsOfFile: path, encoding: .utf8)
        #expect(MembershipLog.replayWarnings(compacted).isEmpty, "the damaged record was compacted away")
        // The worker whose join was lost registers again, as workers do.
        _ = try await again.register(registration("b", roles: [.decode]))
        #expect(try await again.status().workers.map(\.name) == ["a", "b", "c"])
        await again.close()
        await second.stopAndRemove()
    }
}

extension MembershipLog {
    /// Warnings replaying `text` would give.
    static func replayWarnings(_ text: String) -> [String] {
        (try? replay(Data(text.utf8), file: "log").warnings) ?? ["unreadable"]
    }
}
