import ClusterProtocol
import Foundation
import KVTransport
import SwiftProtobuf
import Testing

@Suite("RDMA without a device")
struct RDMATests {
    @Test("Discovery reports devices or a reason, and the summary says which path KV takes")
    func discovery() {
        let discovery = RDMADiscovery.discover()
        if discovery.isAvailable {
            #expect(discovery.unavailableReason == nil)
            #expect(discovery.summary.contains(discovery.devices[0]))
        } else {
            #expect(discovery.unavailableReason?.isEmpty == false)
            #expect(discovery.summary.contains("TLS HTTP/2"))
        }
    }

    @Test("Opening a device fails with an RDMA error naming the verbs call when there is none")
    func openWithoutDevice() throws {
        guard !RDMADiscovery.discover().isAvailable else { return }
        let error = #expect(throws: KVTransportError.self) { _ = try RDMAContext() }
        #expect(error?.code == .rdma)
        #expect(error?.message.contains("ibv_") == true || error?.message.contains("libibverbs") == true)
    }

    @Test("A queue-pair endpoint survives the handshake encoding")
    func endpointEncoding() throws {
        let endpoint = RDMAEndpoint(
            queuePairNumber: 0x1234, packetSequenceNumber: 0xABCDE, gid: Array(0..<16), lid: 7, port: 1, mtu: 3,
            remoteAddress: 0x7F00_0000_1000, remoteKey: 0xBEEF, length: 188 << 20)
        let bytes: [UInt8] = try endpoint.proto.serializedBytes()
        let decoded = try RDMAEndpoint(proto: Baton_V1_RDMAEndpoint(serializedBytes: bytes))
        #expect(decoded == endpoint)
    }

    @Test("A malformed endpoint is refused")
    func malformedEndpoint() {
        var message = RDMAEndpoint(queuePairNumber: 1, packetSequenceNumber: 1, gid: Array(0..<16), lid: 1, port: 1, mtu: 3).proto
        message.gid = Data([1, 2, 3])
        #expect(throws: KVTransportError.self) { try RDMAEndpoint(proto: message) }
        message.gid = Data(Array(0..<16))
        message.mtu = 9
        #expect(throws: KVTransportError.self) { try RDMAEndpoint(proto: message) }
    }
}
