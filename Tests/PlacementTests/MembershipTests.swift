import Foundation
import Testing
@testable import Placement

@Suite("Cluster state")
struct ClusterStateTests {
    @Test("joining, role assignment, heartbeats, loss and leaving transition the state")
    func transitions() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a"), roles: [.prefill, .decode, .prefill], at: epoch))
        #expect(state.workers["a"]?.offeredRoles == [.decode, .prefill])
        #expect(state.workers["a"]?.status == .active)
        state.apply(.roleAssigned(worker: "a", roles: [.decode], at: epoch))
        #expect(state.workers["a"]?.roles == [.decode])
        let load = WorkerLoad(queueDepth: 3, activeSequences: 2, freeKVBlocks: 10)
        state.apply(.heartbeat(worker: "a", load: load, at: epoch.addingTimeInterval(5)))
        #expect(state.workers["a"]?.load == load)
        #expect(state.workers["a"]?.lastSeen == epoch.addingTimeInterval(5))
        state.apply(.heartbeatLost(worker: "a", at: epoch.addingTimeInterval(20)))
        #expect(state.workers["a"]?.status == .lost)
        state.apply(.heartbeat(worker: "a", load: load, at: epoch.addingTimeInterval(21)))
        #expect(state.workers["a"]?.status == .active)
        let before = state
        state.apply(.heartbeat(worker: "ghost", load: load, at: epoch))
        #expect(state == before)
        state.apply(.left(worker: "a", at: epoch.addingTimeInterval(30)))
        #expect(state.workers.isEmpty)
    }

    @Test("members stay in name order as they join, re-join and leave")
    func memberOrder() {
        var state = ClusterState()
        var rng = SeededGenerator(seed: 3)
        var names = Set<String>()
        for step in 0..<300 {
            let name = "w\(Int.random(in: 0..<40, using: &rng))"
            if Int.random(in: 0..<3, using: &rng) == 0 {
                state.apply(.left(worker: name, at: epoch))
                names.remove(name)
            } else {
                state.apply(.joined(profile: profile(name), roles: [.decode], at: epoch))
                names.insert(name)
            }
            #expect(state.sortedWorkers.map(\.name) == names.sorted(), "step \(step)")
        }
    }

    @Test("re-joining replaces the profile and forgets the old assignment")
    func rejoin() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a", gflops: 1), roles: [.prefill], at: epoch))
        state.apply(.roleAssigned(worker: "a", roles: [.prefill], at: epoch))
        let next = state.applying(.joined(profile: profile("a", gflops: 2), roles: [.decode], at: epoch))
        #expect(next.workers["a"]?.profile.sgemmGFLOPS == 2)
        #expect(next.workers["a"]?.assignedRoles == nil)
        #expect(next.workers["a"]?.roles == [.decode])
        #expect(state.workers["a"]?.profile.sgemmGFLOPS == 1)  // value semantics
    }

    @Test("expiry reports only active workers silent for longer than the timeout")
    func expiry() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a"), roles: [.decode], at: epoch))
        state.apply(.joined(profile: profile("b"), roles: [.decode], at: epoch))
        state.apply(.heartbeat(worker: "b", load: WorkerLoad(), at: epoch.addingTimeInterval(8)))
        #expect(state.expire(now: epoch.addingTimeInterval(10), timeout: 10).isEmpty)
        let now = epoch.addingTimeInterval(10.5)
        let events = state.expire(now: now, timeout: 10)
        #expect(events == [.heartbeatLost(worker: "a", at: now)])
        for event in events { state.apply(event) }
        #expect(state.expire(now: now.addingTimeInterval(100), timeout: 10) == [.heartbeatLost(worker: "b", at: now.addingTimeInterval(100))])
    }

    @Test("snapshot events rebuild the same state")
    func snapshot() {
        var state = ClusterState()
        state.apply(.joined(profile: profile("a"), roles: [.decode, .prefill], at: epoch))
        state.apply(.roleAssigned(worker: "a", roles: [.prefill], at: epoch.addingTimeInterval(1)))
        state.apply(.heartbeat(worker: "a", load: WorkerLoad(queueDepth: 1), at: epoch.addingTimeInterval(2)))
        state.apply(.joined(profile: profile("b"), roles: [.decode], at: epoch))
        state.apply(.heartbeatLost(worker: "b", at: epoch.addingTimeInterval(3)))
        var rebuilt = ClusterState()
        for event in state.snapshotEvents { rebuilt.apply(event) }
        #expect(rebuilt == state)
    }
}

@Suite("Membership log")
struct MembershipLogTests {
    let events: [MembershipEvent] = [
        .joined(profile: profile("a", labels: ["box": "compute"]), roles: [.prefill], at: epoch),
        .joined(profile: profile("b", rdma: ["mlx5_0"]), roles: [.decode], at: epoch),
        .roleAssigned(worker: "a", roles: [.prefill], at: epoch.addingTimeInterval(1)),
        .heartbeat(worker: "b", load: WorkerLoad(queueDepth: 2, activeSequences: 5, freeKVBlocks: 7,
                                                 totalKVBlocks: 9, recentTTFTMs: 12.5, recentTPOTMs: nil),
                   at: epoch.addingTimeInterval(2)),
        .heartbeatLost(worker: "a", at: epoch.addingTimeInterval(30)),
    ]

    @Test("appended events survive a restart: replay rebuilds the same membership")
    func appendAndReplay() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/state/membership.jsonl"
        let expected: ClusterState
        do {
            let log = try MembershipLog(path: path)
            #expect(log.state.workers.isEmpty)
            for event in events { try log.append(event) }
            expected = log.state
            #expect(log.eventCount == events.count)
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == events.count)
        #expect(lines[0].hasPrefix("{\"event\":\"joined\""))
        let reopened = try MembershipLog(path: path)
        #expect(reopened.warnings.isEmpty)
        #expect(reopened.state == expected)
        #expect(reopened.state.workers["a"]?.status == .lost)
        #expect(reopened.state.workers["b"]?.load.recentTTFTMs == 12.5)
        try reopened.append(.left(worker: "b", at: epoch.addingTimeInterval(40)))
        #expect(try MembershipLog(path: path).state.workers.keys.sorted() == ["a"])
    }

    @Test("a torn last line is ignored with a warning and cut off so appends continue cleanly")
    func tornLastLine() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.jsonl"
        do {
            let log = try MembershipLog(path: path)
            try log.append(Array(events.prefix(3)))
        }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"event\":\"heartbeat\",\"time\":10000".utf8))
        try handle.close()

        let log = try MembershipLog(path: path)
        #expect(log.warnings.count == 1)
        #expect(log.warnings.first?.contains("membership.jsonl:4: ignoring torn last line") == true)
        #expect(log.state.workers.count == 2)
        try log.append(events[3])
        let reopened = try MembershipLog(path: path)
        #expect(reopened.warnings.isEmpty)
        #expect(reopened.eventCount == 4)
        #expect(reopened.state.workers["b"]?.load.queueDepth == 2)
    }

    @Test("a last event missing only its newline is kept, and the next append starts a new line")
    func missingFinalNewline() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.jsonl"
        var data = Data()
        for event in events.prefix(2) { data.append(try MembershipLog.encodeLine(event)) }
        data.removeLast()
        try data.write(to: URL(fileURLWithPath: path))
        let log = try MembershipLog(path: path)
        #expect(log.state.workers.count == 2)
        try log.append(events[2])
        #expect(try MembershipLog(path: path).eventCount == 3)
    }

    @Test("a garbage line before the last is skipped with a warning naming its line, and the rest is replayed")
    func corruptMiddleLine() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.jsonl"
        var data = Data()
        data.append(try MembershipLog.encodeLine(events[0]))
        data.append(Data("this is not json\n".utf8))
        data.append(try MembershipLog.encodeLine(events[1]))
        try data.write(to: URL(fileURLWithPath: path))
        let log = try MembershipLog(path: path)
        #expect(log.damagedRecords == 1)
        #expect(log.eventCount == 2)
        #expect(log.warnings.count == 1)
        #expect(log.warnings.first?.hasPrefix("\(path):2: skipping a damaged membership record (16 bytes)") == true)
    }

    @Test("every line carries the CRC-32C of its JSON, and one flipped byte makes the line skipped, not the log refused")
    func flippedByte() throws {
        let line = try MembershipLog.encodeLine(events[0])
        let text = String(decoding: line, as: UTF8.self)
        let tab = try #require(text.lastIndex(of: "\t"))
        let json = Array(text[..<tab].utf8)
        #expect(text[tab...] == "\tcrc32c:\(MembershipLog.hex(MembershipLog.checksum(json)))\n")

        var data = Data()
        for event in events.prefix(3) { data.append(try MembershipLog.encodeLine(event)) }
        let middle = try MembershipLog.encodeLine(events[0]).count + 5
        data[middle] ^= 0x01
        let replay = try MembershipLog.replay(data, file: "membership.log")
        #expect(replay.damaged == 1)
        #expect(replay.events == 2)
        #expect(replay.warnings.first?.hasPrefix("membership.log:2: skipping a damaged membership record") == true)
        #expect(replay.warnings.first?.contains("checksum mismatch") == true)
    }

    @Test("compaction keeps the membership and shrinks the log")
    func compaction() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/membership.jsonl"
        let log = try MembershipLog(path: path)
        try log.append(events)
        for second in 0..<20 {
            try log.append(.heartbeat(worker: "b", load: WorkerLoad(queueDepth: second),
                                      at: epoch.addingTimeInterval(Double(100 + second))))
        }
        let before = log.state
        try log.compact()
        #expect(log.eventCount < events.count + 20)
        try log.append(.left(worker: "a", at: epoch.addingTimeInterval(500)))
        let reopened = try MembershipLog(path: path)
        var expected = before
        expected.apply(.left(worker: "a", at: epoch.addingTimeInterval(500)))
        #expect(reopened.state == expected)
    }

    @Test("an intact line with an unknown event kind (a newer build's) refuses the log, not silently skipped")
    func unknownEventKind() throws {
        let json = Array("{\"event\":\"exploded\",\"time\":1,\"worker\":\"a\"}".utf8)
        let line = Data(json + Array("\tcrc32c:\(MembershipLog.hex(MembershipLog.checksum(json)))\n".utf8))
        let data = line + (try MembershipLog.encodeLine(events[0]))
        let error = placementError { _ = try MembershipLog.replay(data, file: "log") }
        #expect(error?.location?.line == 1)
    }
}
