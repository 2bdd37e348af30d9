import RPC
import KVTransport
import Testing

/// The transfer scenarios and the TLS rules over real HTTP/2 connections on loopback.
@Suite("HTTP/2 transport on loopback")
struct HTTP2KVTransportTests {
    /// A server and a client on loopback with the given configurations.
    static func factory(server: KVTransportConfiguration, client: KVTransportConfiguration) -> SenderFactory {
        { receiver, faults, timeout, body in
            var serverConfiguration = server
            serverConfiguration.idleTimeout = timeout
            let listener = try await KVTransferServer.bind(
                host: "127.0.0.1", port: 0, configuration: serverConfiguration, identity: Fixtures.identity,
                receiver: receiver)
            let serving = Task { await listener.run() }
            defer { serving.cancel() }
            let sender = try await KVTransferClient.connect(
                host: "127.0.0.1", port: listener.port, configuration: client, faults: faults)
            do {
                try await body(sender)
            } catch {
                await sender.close()
                await listener.close()
                throw error
            }
            await sender.close()
            await listener.close()
        }
    }

    static let mutualTLS = factory(
        server: Fixtures.configuration(node: Fixtures.certificates.a),
        client: Fixtures.configuration(node: Fixtures.certificates.b))

    static let plaintext = factory(server: Fixtures.configuration(node: nil), client: Fixtures.configuration(node: nil))

    static let sharedMemory: SenderFactory = {
        var server = Fixtures.configuration(node: Fixtures.certificates.a, hostID: "one-box")
        var client = Fixtures.configuration(node: Fixtures.certificates.b, hostID: "one-box")
        server.policy.allowSharedMemory = true
        client.policy.allowSharedMemory = true
        return factory(server: server, client: client)
    }()

    @Test("Over mutual TLS, chunks land straight in the receiver's scattered landing zone")
    func landingZone() async throws { try await TransferScenarios.roundTrip(Self.mutualTLS, expecting: .tlsHTTP2, landing: true) }

    @Test("Over mutual TLS, a flipped bit written into a landing zone is never reported landed")
    func landingZoneFlippedBit() async throws { try await TransferScenarios.flippedBit(Self.mutualTLS, landing: true) }

    @Test("Over shared memory, each layer is copied and checked into the landing zone in one pass")
    func sharedMemoryLandingZone() async throws {
        try await TransferScenarios.roundTrip(Self.sharedMemory, expecting: .sharedMemory, landing: true)
    }

    @Test("Over shared memory, a flipped bit copied into a landing zone is never reported landed")
    func sharedMemoryLandingZoneFlippedBit() async throws { try await TransferScenarios.flippedBit(Self.sharedMemory, landing: true) }

    @Test("Over mutual TLS, a layer sent as scattered regions arrives intact")
    func scatteredLayers() async throws {
        try await TransferScenarios.roundTrip(Self.mutualTLS, expecting: .tlsHTTP2, landing: true, regions: true)
    }

    @Test("Over shared memory, a layer sent as scattered regions arrives intact")
    func sharedMemoryScatteredLayers() async throws {
        try await TransferScenarios.roundTrip(Self.sharedMemory, expecting: .sharedMemory, regions: true)
    }

    @Test("Mutual TLS carries every layer intact")
    func mutualTLSRoundTrip() async throws { try await TransferScenarios.roundTrip(Self.mutualTLS, expecting: .tlsHTTP2) }

    @Test("Plaintext HTTP/2 works when both ends are explicitly insecure")
    func plaintextRoundTrip() async throws { try await TransferScenarios.roundTrip(Self.plaintext, expecting: .plaintextHTTP2) }

    @Test("Same-host peers switch to shared memory over the TLS control stream")
    func sharedMemoryRoundTrip() async throws { try await TransferScenarios.roundTrip(Self.sharedMemory, expecting: .sharedMemory) }

    @Test("Over mutual TLS, a mismatched identity is refused at the handshake")
    func identityMismatch() async throws { try await TransferScenarios.identityMismatch(Self.mutualTLS) }

    @Test("Over mutual TLS, a flipped bit fails the transfer and never reaches the decode side")
    func flippedBit() async throws { try await TransferScenarios.flippedBit(Self.mutualTLS) }

    @Test("Over shared memory, a flipped bit fails the transfer")
    func flippedBitSharedMemory() async throws { try await TransferScenarios.flippedBit(Self.sharedMemory) }

    @Test("Over mutual TLS, a cut stream fails the transfer and frees the blocks")
    func truncated() async throws { try await TransferScenarios.truncated(Self.mutualTLS) }

    @Test("Over mutual TLS, a silent sender times out")
    func silentPeer() async throws { try await TransferScenarios.silentPeer(Self.mutualTLS) }

    @Test("Over mutual TLS, a cancelled producer cancels the transfer on both sides")
    func cancelled() async throws { try await TransferScenarios.cancelled(Self.mutualTLS) }

    @Test("Over mutual TLS, a receiver without room refuses")
    func refused() async throws { try await TransferScenarios.refused(Self.mutualTLS) }

    @Test("A client whose certificate is from another CA is refused")
    func foreignClient() async throws {
        let stranger = try ClusterCertificates.makeAuthority(name: "Not the cluster")
        let intruder = try ClusterCertificates.issueNode("intruder", roles: [.prefill], authority: stranger)
        var client = Fixtures.configuration(node: nil)
        client.tls = ClusterCertificates.tls(node: intruder, authorityPEM: Fixtures.certificates.authority.certificatePEM)
        client.policy.insecure = false
        try await expectRefused(server: Fixtures.configuration(node: Fixtures.certificates.a), client: client)
    }

    @Test("A server whose certificate is from another CA is refused by the client")
    func foreignServer() async throws {
        let stranger = try ClusterCertificates.makeAuthority(name: "Not the cluster")
        let impostor = try ClusterCertificates.issueNode("impostor", roles: [.decode], authority: stranger)
        var server = Fixtures.configuration(node: nil)
        server.tls = ClusterCertificates.tls(node: impostor, authorityPEM: Fixtures.certificates.authority.certificatePEM)
        server.policy.insecure = false
        try await expectRefused(server: server, client: Fixtures.configuration(node: Fixtures.certificates.b))
    }

    @Test("A cluster node without the prefill role cannot send KV (a router's certificate is refused)")
    func routerCannotSendKV() async throws {
        let router = try ClusterCertificates.issueNode("router", roles: [.router], authority: Fixtures.certificates.authority)
        try await expectRefused(
            server: Fixtures.configuration(node: Fixtures.certificates.a), client: Fixtures.configuration(node: router))
    }

    @Test("A prefill node refuses to send KV to a listener whose certificate lacks the decode role")
    func senderChecksDecodeRole() async throws {
        let router = try ClusterCertificates.issueNode("router", roles: [.router], authority: Fixtures.certificates.authority)
        try await expectRefused(
            server: Fixtures.configuration(node: router), client: Fixtures.configuration(node: Fixtures.certificates.b))
    }

    @Test("A plaintext client cannot talk to a TLS server")
    func plaintextClient() async throws {
        try await expectRefused(server: Fixtures.configuration(node: Fixtures.certificates.a), client: Fixtures.configuration(node: nil))
    }

    @Test("Without certificates a server refuses to start unless insecure is set")
    func insecureRequired() async throws {
        var configuration = Fixtures.configuration(node: nil)
        configuration.policy.insecure = false
        let error = await #expect(throws: KVTransportError.self) {
            _ = try await KVTransferServer.bind(
                host: "127.0.0.1", port: 0, configuration: configuration, identity: Fixtures.identity,
                receiver: RecordingReceiver())
        }
        #expect(error?.code == .invalidArgument)
    }

    @Test("Several transfers share one connection")
    func concurrentTransfers() async throws {
        let receiver = RecordingReceiver()
        try await Self.mutualTLS(receiver, .none, .seconds(5)) { sender in
            try await withThrowingTaskGroup(of: KVTransferReport.self) { group in
                for index in 0..<4 {
                    group.addTask {
                        let request = Fixtures.request("req-\(index)")
                        return try await sender.transfer(request, produce: Fixtures.produceAll(request))
                    }
                }
                var count = 0
                for try await report in group {
                    #expect(report.bytes == 4 * 6144)
                    count += 1
                }
                #expect(count == 4)
            }
        }
        try await eventually { receiver.snapshot.completions.count == 4 }
        #expect(receiver.snapshot.reserved.isEmpty)
    }

    func expectRefused(server: KVTransportConfiguration, client: KVTransportConfiguration) async throws {
        let receiver = RecordingReceiver()
        let listener = try await KVTransferServer.bind(
            host: "127.0.0.1", port: 0, configuration: server, identity: Fixtures.identity, receiver: receiver)
        let serving = Task { await listener.run() }
        defer { serving.cancel() }
        var clientConfiguration = client
        clientConfiguration.idleTimeout = .seconds(3)
        let request = Fixtures.request()
        await #expect(throws: KVTransportError.self) {
            let sender = try await KVTransferClient.connect(host: "127.0.0.1", port: listener.port, configuration: clientConfiguration)
            defer { Task { await sender.close() } }
            _ = try await sender.transfer(request, produce: Fixtures.produceAll(request))
        }
        #expect(receiver.snapshot.begun.isEmpty, "an unauthenticated peer must never reach the receiver")
        await listener.close()
    }
}
