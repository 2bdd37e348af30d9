import Foundation
import KVTransport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Baton's verbs layer (`RDMAContext` over the CIBVerbs shim) against the emulated provider: registration,
/// queue-pair set-up, posting, completions and what a real HCA answers to every mistake.
@Suite("RDMA verbs over the emulated provider", .serialized)
struct RDMAVerbsTests {
    /// One end: a device context, a buffer registered on it and a queue pair (created, not connected).
    final class End {
        let context: RDMAContext
        let buffer: UnsafeMutableRawBufferPointer
        var region: RDMAMemoryRegion?
        let endpoint: RDMAEndpoint

        init(
            device: String, bytes: Int = 64 << 10, remoteWrite: Bool = true, gidIndex: Int32 = 0,
            completionQueueEntries: Int32 = 64, receives: Int = 0
        ) throws {
            context = try RDMAContext(
                library: try FakeVerbs.path(), device: device, gidIndex: gidIndex,
                completionQueueEntries: completionQueueEntries)
            buffer = .allocate(byteCount: bytes, alignment: 4096)
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            region = try context.register(buffer.baseAddress!, length: bytes, allowRemoteWrite: remoteWrite)
            endpoint = try context.createQueuePair(maxSend: 16, maxReceive: 16)
            for id in 0..<receives { try context.postReceive(id: UInt64(1000 + id)) }
        }

        deinit {
            region = nil  // deregistered before the memory goes
            buffer.deallocate()
        }

        /// This end as its peer needs it to WRITE here: queue pair plus buffer.
        var advertised: RDMAEndpoint {
            var endpoint = self.endpoint
            endpoint.remoteAddress = region!.remoteAddress
            endpoint.remoteKey = region!.remoteKey
            endpoint.length = UInt64(region!.length)
            return endpoint
        }

        /// Polls until `count` completions arrived (the emulated device completes at once; two seconds at most).
        func completions(_ count: Int) throws -> [RDMAContext.Completion] {
            var all: [RDMAContext.Completion] = []
            let deadline = ContinuousClock.now + .seconds(2)
            while all.count < count && ContinuousClock.now < deadline { all += try context.poll() }
            return all
        }
    }

    /// A sender on fakerdma0 and a receiver on fakerdma1, connected both ways.
    static func connectedPair(receives: Int = 4, receiverWrite: Bool = true, gidIndex: Int32 = 0) throws -> (sender: End, receiver: End) {
        let sender = try End(device: "fakerdma0", gidIndex: gidIndex)
        let receiver = try End(device: "fakerdma1", remoteWrite: receiverWrite, gidIndex: gidIndex, receives: receives)
        try receiver.context.connect(to: sender.endpoint)
        try sender.context.connect(to: receiver.endpoint)
        return (sender, receiver)
    }

    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed } }

    /// Fills the sender's buffer with `pattern` and WRITEs `count` bytes of it to `offset` of the receiver.
    static func write(
        _ sender: End, to remote: RDMAEndpoint, id: UInt64 = 1, count: Int = 10_000, remoteOffset: Int = 0, immediate: UInt32 = 7
    ) throws {
        let bytes = pattern(count, seed: UInt8(truncatingIfNeeded: id))
        bytes.withUnsafeBytes { sender.buffer.copyMemory(from: $0) }
        try sender.context.write(
            id: id, from: sender.region!, offset: 0, length: count, to: remote, remoteOffset: remoteOffset, immediate: immediate)
    }

    init() { FakeVerbs.clearFaults() }

    @Test("The emulated provider is found through its library path and announced as emulated")
    func discovery() throws {
        let library = try FakeVerbs.path()
        let discovery = RDMADiscovery.discover(library: library)
        #expect(discovery.devices == ["fakerdma0", "fakerdma1"])
        #expect(discovery.emulated?.contains("emulated") == true)
        #expect(discovery.summary.hasPrefix("RDMA EMULATED from \(library)"), "\(discovery.summary)")
        #expect(RDMADiscovery.discover(library: RDMASettings.standardLibrary).emulated == nil)

        let missing = RDMADiscovery.discover(library: "/nonexistent/libibverbs.so.1")
        #expect(!missing.isAvailable)
        #expect(missing.unavailableReason?.contains("dlopen(/nonexistent/libibverbs.so.1)") == true)
        #expect(missing.summary.contains("KV transfers use TLS HTTP/2"))
    }

    @Test("A WRITE with immediate lands in the peer's registered buffer and completes on both sides")
    func writeWithImmediate() throws {
        let (sender, receiver) = try Self.connectedPair()
        // fakerdma0 runs MTU 4096, fakerdma1 1024: each side offers its own, the connection uses the smaller.
        #expect(sender.endpoint.mtu == 5 && receiver.endpoint.mtu == 3)
        #expect(sender.endpoint.lid == 1 && receiver.endpoint.lid == 2)
        #expect(sender.endpoint.gid != receiver.endpoint.gid && sender.endpoint.gid.count == 16)
        #expect(sender.endpoint.queuePairNumber != receiver.endpoint.queuePairNumber)

        try Self.write(sender, to: receiver.advertised, id: 42, count: 10_000, remoteOffset: 100, immediate: 7)
        let sent = try sender.completions(1)
        #expect(sent.map(\.id) == [42])
        #expect(sent.first?.immediate == nil)
        let received = try receiver.completions(1)
        #expect(received.map(\.immediate) == [7])
        #expect(received.first?.id == 1000, "the first posted receive is consumed")
        #expect(received.first?.byteCount == 10_000)
        #expect(Array(receiver.buffer[100..<10_100]) == Self.pattern(10_000, seed: 42))
        #expect(receiver.buffer[0..<100].allSatisfy { $0 == 0 } && receiver.buffer[10_100..<20_000].allSatisfy { $0 == 0 })

        // The next WRITE lands behind it: PSNs advanced in step on both ends.
        try Self.write(sender, to: receiver.advertised, id: 43, count: 3000, remoteOffset: 20_000, immediate: 8)
        #expect(try sender.completions(1).map(\.id) == [43])
        #expect(try receiver.completions(1).map(\.immediate) == [8])
        #expect(Array(receiver.buffer[20_000..<23_000]) == Self.pattern(3000, seed: 43))
    }

    @Test("InfiniBand LID routing (no GID) connects queue pairs too")
    func lidRouting() throws {
        let (sender, receiver) = try Self.connectedPair(gidIndex: -1)
        #expect(sender.endpoint.gid == [UInt8](repeating: 0, count: 16))
        try Self.write(sender, to: receiver.advertised, id: 3, count: 512)
        #expect(try sender.completions(1).map(\.id) == [3])
        #expect(Array(receiver.buffer[0..<512]) == Self.pattern(512, seed: 3))
    }

    @Test("Registration hands out distinct keys and refuses memory that is not mapped")
    func registration() throws {
        let end = try End(device: "fakerdma0")
        let other = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { other.deallocate() }
        var second: RDMAMemoryRegion? = try end.context.register(other.baseAddress!, length: 8192, allowRemoteWrite: true)
        #expect(second?.remoteKey != end.region?.remoteKey)
        #expect(second?.remoteAddress == UInt64(UInt(bitPattern: other.baseAddress!)))
        second = nil

        let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        munmap(page, 4096)
        let error = #expect(throws: KVTransportError.self) {
            _ = try end.context.register(page, length: 4096, allowRemoteWrite: true)
        }
        #expect(error?.code == .rdma)
        #expect(error?.message == "ibv_reg_mr: Bad address (errno 14)")
    }

    @Test("A WRITE with a wrong rkey fails with a remote access error, and the peer's receives are flushed")
    func wrongRemoteKey() throws {
        let (sender, receiver) = try Self.connectedPair()
        var forged = receiver.advertised
        forged.remoteKey ^= 0x1
        try Self.write(sender, to: forged, id: 9)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.code == .rdma)
        #expect(error?.message == "work request 9 failed: remote access error (status 10)")
        let flushed = #expect(throws: KVTransportError.self) { _ = try receiver.completions(1) }
        #expect(flushed?.message.contains("Work Request Flushed Error (status 5)") == true)
        #expect(receiver.buffer.allSatisfy { $0 == 0 }, "nothing was written")

        // The queue pair is now in error: what follows is flushed, not written.
        try Self.write(sender, to: receiver.advertised, id: 10)
        let next = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(next?.message == "work request 10 failed: Work Request Flushed Error (status 5)")
    }

    @Test("A WRITE past the end of the peer's region fails with a remote access error")
    func outOfBoundsAtThePeer() throws {
        let (sender, receiver) = try Self.connectedPair()
        var overstated = receiver.advertised
        overstated.length *= 2  // a peer that advertises more than it registered
        try Self.write(sender, to: overstated, id: 4, count: 1000, remoteOffset: receiver.buffer.count - 10)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.message == "work request 4 failed: remote access error (status 10)")
        #expect(receiver.buffer.allSatisfy { $0 == 0 })
    }

    @Test("A WRITE that the advertised length rules out is refused before it is posted")
    func outOfBoundsLocally() throws {
        let (sender, receiver) = try Self.connectedPair()
        let error = #expect(throws: KVTransportError.self) {
            try Self.write(sender, to: receiver.advertised, id: 5, count: 1000, remoteOffset: receiver.buffer.count - 10)
        }
        #expect(error?.code == .invalidArgument)
        #expect(try sender.context.poll().isEmpty, "nothing was posted")
    }

    @Test("A region registered without remote write cannot be written by the peer")
    func regionWithoutRemoteWrite() throws {
        let (sender, receiver) = try Self.connectedPair(receiverWrite: false)
        try Self.write(sender, to: receiver.advertised, id: 6, count: 64)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.message == "work request 6 failed: remote access error (status 10)")
    }

    @Test("Posting a WRITE before the queue pair is connected fails at once")
    func notConnected() throws {
        let sender = try End(device: "fakerdma0")
        let receiver = try End(device: "fakerdma1", receives: 1)
        let error = #expect(throws: KVTransportError.self) { try Self.write(sender, to: receiver.advertised, id: 1, count: 64) }
        #expect(error?.code == .rdma)
        #expect(error?.message == "ibv_post_send(RDMA_WRITE_WITH_IMM): Invalid argument (errno 22)")
    }

    @Test("Connecting a queue pair twice is refused by the queue-pair state machine")
    func connectTwice() throws {
        let (sender, receiver) = try Self.connectedPair()
        let error = #expect(throws: KVTransportError.self) { try sender.context.connect(to: receiver.endpoint) }
        #expect(error?.message == "ibv_modify_qp(RTR): Invalid argument (errno 22)")
    }

    @Test("A WRITE towards a queue pair that is gone exhausts the transport retries")
    func peerGone() throws {
        var pair: (sender: End, receiver: End)? = try Self.connectedPair()
        let sender = pair!.sender
        let advertised = pair!.receiver.advertised
        pair = nil  // the receiver's queue pair, region and device are released
        try Self.write(sender, to: advertised, id: 11, count: 64)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.message == "work request 11 failed: transport retry counter exceeded (status 12)")
    }

    @Test("A peer addressed by the wrong GID, or expecting another packet sequence number, never answers")
    func wrongAddressOrSequence() throws {
        for mistake in ["gid", "psn"] {
            let sender = try End(device: "fakerdma0")
            let receiver = try End(device: "fakerdma1", receives: 1)
            var told = sender.endpoint
            if mistake == "psn" { told.packetSequenceNumber = (told.packetSequenceNumber + 1) & 0xFF_FFFF }
            try receiver.context.connect(to: told)
            var address = receiver.endpoint
            if mistake == "gid" { address.gid[15] ^= 0x40 }
            try sender.context.connect(to: address)
            try Self.write(sender, to: receiver.advertised, id: 12, count: 64)
            let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
            #expect(error?.message == "work request 12 failed: transport retry counter exceeded (status 12)", "wrong \(mistake)")
        }
    }

    @Test("A WRITE with immediate that finds no posted receive fails with an RNR error")
    func noPostedReceive() throws {
        let (sender, receiver) = try Self.connectedPair(receives: 0)
        try Self.write(sender, to: receiver.advertised, id: 13, count: 64)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.message == "work request 13 failed: RNR retry counter exceeded (status 13)")
    }

    @Test("A completion queue that overflows reports an error")
    func completionQueueOverrun() throws {
        let sender = try End(device: "fakerdma0", completionQueueEntries: 2)
        let receiver = try End(device: "fakerdma1", receives: 3)
        try receiver.context.connect(to: sender.endpoint)
        try sender.context.connect(to: receiver.endpoint)
        for id in 1...3 { try Self.write(sender, to: receiver.advertised, id: UInt64(id), count: 64) }
        let error = #expect(throws: KVTransportError.self) { _ = try sender.context.poll() }
        #expect(error?.message == "ibv_poll_cq: completion queue error")
    }

    @Test("An error completion surfaces with the verbs status text")
    func errorCompletion() throws {
        let (sender, receiver) = try Self.connectedPair()
        try FakeVerbs.inject("completion", FakeVerbs.remoteOperationError)
        defer { FakeVerbs.clearFaults() }
        try Self.write(sender, to: receiver.advertised, id: 14, count: 64)
        let error = #expect(throws: KVTransportError.self) { _ = try sender.completions(1) }
        #expect(error?.message == "work request 14 failed: remote operation error (status 11)")
    }

    @Test("A device whose port is down cannot be opened")
    func portDown() throws {
        try FakeVerbs.inject("port_state", FakeVerbs.portDown)
        defer { FakeVerbs.clearFaults() }
        let error = #expect(throws: KVTransportError.self) { _ = try End(device: "fakerdma0") }
        #expect(error?.message == "ibv_query_port: port 1 is not active (state 1)")
    }
}
