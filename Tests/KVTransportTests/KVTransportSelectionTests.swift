import KVTransport
import Testing

@Suite("Transport selection")
struct KVTransportSelectionTests {
    let here = KVTransportCapabilities(hostID: "host-1", sharedMemory: true, rdma: true)

    @Test("Same host chooses shared memory")
    func sameHost() throws {
        let kind = try KVTransportSelection.select(local: here, remote: here, policy: KVTransportPolicy(), connectionIsTLS: true)
        #expect(kind == .sharedMemory)
    }

    @Test("Different hosts with RDMA on both ends choose RDMA")
    func rdmaBothEnds() throws {
        let there = KVTransportCapabilities(hostID: "host-2", sharedMemory: true, rdma: true)
        #expect(try KVTransportSelection.select(local: here, remote: there, policy: KVTransportPolicy(), connectionIsTLS: true) == .rdma)
    }

    @Test("Without an RDMA device on one end the transfer falls back to TLS HTTP/2")
    func rdmaFallback() throws {
        let there = KVTransportCapabilities(hostID: "host-2", sharedMemory: true, rdma: false)
        #expect(try KVTransportSelection.select(local: here, remote: there, policy: KVTransportPolicy(), connectionIsTLS: true) == .tlsHTTP2)
    }

    @Test("Policy can forbid RDMA and shared memory")
    func policyForbids() throws {
        let policy = KVTransportPolicy(allowRDMA: false, allowSharedMemory: false)
        #expect(try KVTransportSelection.select(local: here, remote: here, policy: policy, connectionIsTLS: true) == .tlsHTTP2)
    }

    @Test("Empty host ids never count as the same host")
    func emptyHostID() throws {
        let anonymous = KVTransportCapabilities(hostID: "", sharedMemory: true, rdma: false)
        #expect(try KVTransportSelection.select(local: anonymous, remote: anonymous, policy: KVTransportPolicy(), connectionIsTLS: true) == .tlsHTTP2)
    }

    @Test("A plaintext connection is refused unless insecure is set")
    func plaintext() throws {
        let there = KVTransportCapabilities(hostID: "host-2", sharedMemory: false, rdma: false)
        #expect(throws: KVTransportError.self) {
            try KVTransportSelection.select(local: here, remote: there, policy: KVTransportPolicy(), connectionIsTLS: false)
        }
        let insecure = KVTransportPolicy(insecure: true)
        #expect(try KVTransportSelection.select(local: here, remote: there, policy: insecure, connectionIsTLS: false) == .plaintextHTTP2)
    }
}
