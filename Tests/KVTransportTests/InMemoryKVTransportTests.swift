import KVTransport
import Testing

@Suite("In-memory transport twin")
struct InMemoryKVTransportTests {
    static let make: SenderFactory = { receiver, faults, timeout, body in
        let transport = InMemoryKVTransport(
            receiverIdentity: Fixtures.identity, receiver: receiver, chunkBytes: 4096, idleTimeout: timeout, faults: faults)
        try await body(transport)
    }

    static let makeSharedMemory: SenderFactory = { receiver, faults, timeout, body in
        let here = KVTransportCapabilities(hostID: "same-host", sharedMemory: true, rdma: false)
        let transport = InMemoryKVTransport(
            receiverIdentity: Fixtures.identity, receiver: receiver, senderCapabilities: here, receiverCapabilities: here,
            chunkBytes: 4096, idleTimeout: timeout, faults: faults)
        try await body(transport)
    }

    @Test("Every layer arrives intact with the completion")
    func roundTrip() async throws { try await TransferScenarios.roundTrip(Self.make, expecting: .tlsHTTP2) }

    @Test("Same-host peers hand over through shared memory")
    func sharedMemory() async throws { try await TransferScenarios.roundTrip(Self.makeSharedMemory, expecting: .sharedMemory) }

    @Test("A mismatched identity is refused before any KV moves")
    func identityMismatch() async throws { try await TransferScenarios.identityMismatch(Self.make) }

    @Test("A flipped bit fails the transfer and the bad layer is never delivered")
    func flippedBit() async throws { try await TransferScenarios.flippedBit(Self.make) }

    @Test("A flipped bit in shared memory is caught by the layer checksum")
    func flippedBitSharedMemory() async throws { try await TransferScenarios.flippedBit(Self.makeSharedMemory) }

    @Test("A truncated stream fails the transfer and frees the receiver's blocks")
    func truncated() async throws { try await TransferScenarios.truncated(Self.make) }

    @Test("A silent sender times out on the receiver")
    func silentPeer() async throws { try await TransferScenarios.silentPeer(Self.make) }

    @Test("A producer that gives up cancels the transfer on both sides")
    func cancelled() async throws { try await TransferScenarios.cancelled(Self.make) }

    @Test("A receiver without room refuses the transfer")
    func refused() async throws { try await TransferScenarios.refused(Self.make) }

    @Test("A receiver that cannot store a layer aborts the transfer")
    func receiverRejectsLayer() async throws { try await TransferScenarios.receiverRejectsLayer(Self.make) }

    @Test("Sending layers out of order fails the transfer")
    func outOfOrder() async throws {
        let receiver = RecordingReceiver()
        let transport = InMemoryKVTransport(receiverIdentity: Fixtures.identity, receiver: receiver, chunkBytes: 4096)
        let error = await #expect(throws: KVTransportError.self) {
            try await transport.transfer(Fixtures.request()) { transfer in
                try await transfer.send(layer: 1, bytes: Fixtures.layerBytes(1, count: 6144))
                return Fixtures.completion()
            }
        }
        #expect(error?.code == .invalidArgument)
        try await eventually { receiver.snapshot.failures.count == 1 }
        #expect(receiver.snapshot.reserved.isEmpty)
    }
}
