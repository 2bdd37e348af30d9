import ClusterProtocol
import KVTransport
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Whole transfers over the RDMA data path (the emulated provider standing in for the device): the same
/// scenarios as the other transports, plus the fallbacks and failures only RDMA has.
@Suite("RDMA transport over the emulated provider", .serialized)
struct RDMATransportTests {
    static let rdmaCapable = KVTransportCapabilities(hostID: "", sharedMemory: false, rdma: true)

    /// The in-memory twin with both ends offering RDMA.
    static let inMemory: SenderFactory = { receiver, faults, timeout, body in
        let transport = InMemoryKVTransport(
            receiverIdentity: Fixtures.identity, receiver: receiver, senderCapabilities: rdmaCapable,
            receiverCapabilities: rdmaCapable, chunkBytes: 4096, idleTimeout: timeout, faults: faults,
            rdma: try FakeVerbs.settings())
        try await body(transport)
    }

    /// Two "hosts" on loopback (distinct host ids, so no shared memory), each with an emulated device, the
    /// control stream over mutual TLS; `logs` records both ends' log lines.
    static func mutualTLS(logs: LogRecorder? = nil, senderDevice: String = "fakerdma0", receiverDevice: String = "fakerdma1") -> SenderFactory {
        { receiver, faults, timeout, body in
            var server = Fixtures.configuration(node: Fixtures.certificates.a, hostID: "decode-host", idleTimeout: timeout)
            var client = Fixtures.configuration(node: Fixtures.certificates.b, hostID: "prefill-host")
            server.rdma = try FakeVerbs.settings(device: receiverDevice)
            client.rdma = try FakeVerbs.settings(device: senderDevice)
            server.discoverRDMA(logger: logs?.logger("decode") ?? Logger(label: "test"))
            client.discoverRDMA(logger: logs?.logger("prefill") ?? Logger(label: "test"))
            let logger = logs?.logger("kv") ?? Logger(label: "baton.kv-transport")
            let listener = try await KVTransferServer.bind(
                host: "127.0.0.1", port: 0, configuration: server, identity: Fixtures.identity, receiver: receiver, logger: logger)
            let serving = Task { await listener.run() }
            defer { serving.cancel() }
            let sender = try await KVTransferClient.connect(
                host: "127.0.0.1", port: listener.port, configuration: client, faults: faults, logger: logger)
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

    init() { FakeVerbs.clearFaults() }

    @Test("Over the in-memory twin, every layer crosses by RDMA WRITE and arrives intact")
    func inMemoryRoundTrip() async throws { try await TransferScenarios.roundTrip(Self.inMemory, expecting: .rdma) }

    @Test("Between two hosts with devices, the KV takes RDMA while the control stream stays on mutual TLS")
    func mutualTLSRoundTrip() async throws {
        let logs = LogRecorder()
        try await TransferScenarios.roundTrip(Self.mutualTLS(logs: logs), expecting: .rdma)
        #expect(logs.contains("RDMA EMULATED from "), "discovery announces the emulated provider: \(logs.lines)")
    }

    @Test("Over RDMA, layers land in the receiver's scattered landing zone and scattered sources arrive intact")
    func landingZoneAndRegions() async throws {
        try await TransferScenarios.roundTrip(Self.mutualTLS(), expecting: .rdma, landing: true)
        try await TransferScenarios.roundTrip(Self.mutualTLS(), expecting: .rdma, landing: true, regions: true)
    }

    @Test("Both ends on one device connect as well as across two")
    func oneDevice() async throws {
        try await TransferScenarios.roundTrip(Self.mutualTLS(senderDevice: "fakerdma1", receiverDevice: "fakerdma1"), expecting: .rdma)
    }

    @Test("Over RDMA, a bit flipped after the checksum fails the transfer and never reaches the decode side")
    func flippedBit() async throws {
        try await TransferScenarios.flippedBit(Self.inMemory)
        try await TransferScenarios.flippedBit(Self.mutualTLS(), landing: true)
    }

    @Test("Over RDMA, a mismatched identity is refused before any queue pair connects")
    func identityMismatch() async throws { try await TransferScenarios.identityMismatch(Self.mutualTLS()) }

    @Test("Over RDMA, a control stream cut mid-transfer fails it and frees the blocks")
    func truncated() async throws { try await TransferScenarios.truncated(Self.mutualTLS()) }

    @Test("Over RDMA, a sender gone silent times out")
    func silentPeer() async throws { try await TransferScenarios.silentPeer(Self.mutualTLS()) }

    @Test("Over RDMA, a cancelled producer cancels the transfer on both sides")
    func cancelled() async throws { try await TransferScenarios.cancelled(Self.mutualTLS()) }

    @Test("Over RDMA, a receiver without room refuses")
    func refused() async throws { try await TransferScenarios.refused(Self.mutualTLS()) }

    @Test("Over RDMA, a receiver that cannot store a layer aborts, and the sender reports its reason")
    func receiverRejectsLayer() async throws {
        // The receiver releases its queue pair as it gives up, so the sender's next WRITE fails: the receiver's
        // reason, not that failure, is what the sender reports.
        try await TransferScenarios.receiverRejectsLayer(Self.inMemory)
        try await TransferScenarios.receiverRejectsLayer(Self.mutualTLS())
    }

    @Test("Several RDMA transfers share one connection, each on its own queue pair")
    func concurrentTransfers() async throws {
        let receiver = RecordingReceiver()
        try await Self.mutualTLS()(receiver, .none, .seconds(5)) { sender in
            try await withThrowingTaskGroup(of: KVTransferReport.self) { group in
                for index in 0..<4 {
                    group.addTask {
                        let request = Fixtures.request("req-\(index)")
                        return try await sender.transfer(request, produce: Fixtures.produceAll(request))
                    }
                }
                for try await report in group {
                    #expect(report.transport == .rdma)
                    #expect(report.bytes == 4 * 6144)
                }
            }
        }
        try await eventually { receiver.snapshot.completions.count == 4 }
        #expect(receiver.snapshot.transports == Array(repeating: .rdma, count: 4))
    }

    @Test("When the sender's device refuses, the KV goes over TLS HTTP/2 and the log says why")
    func senderDeviceRefuses() async throws {
        try FakeVerbs.inject("port_state", FakeVerbs.portDown, count: -1)
        defer { FakeVerbs.clearFaults() }
        let logs = LogRecorder()
        try await Self.fallback(logs: logs)
        #expect(logs.contains("RDMA unavailable for request req-1, using the TLS stream: RDMA error: ibv_query_port: port 1 is not active"), "\(logs.lines)")
    }

    @Test("When the receiver's device refuses, the KV goes over TLS HTTP/2 and the log says why")
    func receiverDeviceRefuses() async throws {
        // The sender registers its staging buffer first (before the handshake); the receiver's registration fails.
        try FakeVerbs.inject("ibv_reg_mr", ENOMEM, skip: 1, count: 1)
        defer { FakeVerbs.clearFaults() }
        let logs = LogRecorder()
        try await Self.fallback(logs: logs)
        #expect(logs.contains("RDMA unavailable for request req-1, using the TLS stream: RDMA error: ibv_reg_mr: Cannot allocate memory (errno 12)"), "\(logs.lines)")
    }

    /// A transfer that must end on TLS HTTP/2 although both ends announced RDMA, the decode side told so.
    static func fallback(logs: LogRecorder) async throws {
        let receiver = RecordingReceiver()
        try await Self.mutualTLS(logs: logs)(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let report = try await sender.transfer(request, produce: Fixtures.produceAll(request))
            #expect(report.transport == .tlsHTTP2)
        }
        try await eventually { receiver.snapshot.completions.count == 1 }
        let record = receiver.snapshot
        #expect(record.transports == [.tlsHTTP2])
        for layer in 0..<4 {
            #expect(record.layers[layer] == Fixtures.layerBytes(layer, count: 6144), "layer \(layer)")
        }
    }

    @Test("An error completion mid-transfer fails it with the verbs status, and the decode side frees the request")
    func errorCompletionMidTransfer() async throws {
        // Layers 0 and 1 land; the WRITE of layer 2 completes in error (the peer's HCA reports a fault).
        try FakeVerbs.inject("completion", FakeVerbs.remoteOperationError, skip: 2, count: 1)
        defer { FakeVerbs.clearFaults() }
        let receiver = RecordingReceiver()
        try await Self.mutualTLS()(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .rdma)
            #expect(error?.message == "work request 2 failed: remote operation error (status 11)")
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        let record = receiver.snapshot
        // The wire has no RDMA error code: the peer's reason arrives as an internal error, with the verbs status.
        #expect(record.failures.first?.message == "peer: work request 2 failed: remote operation error (status 11)")
        #expect(record.layers.keys.sorted() == [0, 1])
        #expect(record.completions.isEmpty)
        #expect(record.reserved.isEmpty)
    }

    @Test("The receiving state machine turns a refused RDMA set-up into the stream's own transport")
    func stateMachineFallback() throws {
        for connectionIsTLS in [true, false] {
            var machine = KVReceiverStateMachine(
                identity: Fixtures.identity, capabilities: Self.rdmaCapable, policy: KVTransportPolicy(insecure: !connectionIsTLS),
                connectionIsTLS: connectionIsTLS, maximumChunkBytes: 4096)
            var handshake = KVReceiverStateMachineTests().handshake(Fixtures.request())
            handshake.capabilities.rdma = true
            guard case .accept(let request, .rdma) = machine.receiveHandshake(handshake) else {
                Issue.record("RDMA was not chosen")
                return
            }
            #expect(machine.rdmaUnavailable() == .accept(request, connectionIsTLS ? .tlsHTTP2 : .plaintextHTTP2))
            #expect(machine.transport == (connectionIsTLS ? .tlsHTTP2 : .plaintextHTTP2))
            guard case .fail(.protocolViolation, _, _) = machine.rdmaUnavailable() else {
                Issue.record("a second fallback must be refused")
                return
            }
        }
    }
}

/// Collects log lines (message and level) from every logger it makes.
final class LogRecorder: Sendable {
    private let storage = Mutex<[String]>([])

    var lines: [String] { storage.withLock { $0 } }

    func contains(_ text: String) -> Bool { lines.contains { $0.contains(text) } }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { _ in Handler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }

    fileprivate func append(_ line: String) { storage.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.append("\(event.level): \(event.message)")
        }
    }
}
