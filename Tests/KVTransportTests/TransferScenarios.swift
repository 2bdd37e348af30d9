import KVTransport
import Testing

/// Builds a sender wired to `receiver` (receiver idle timeout `receiverTimeout`) with `faults` injected,
/// runs `body` with it, and tears everything down.
typealias SenderFactory = @Sendable (
    _ receiver: RecordingReceiver, _ faults: KVTransferFaults, _ receiverTimeout: Duration,
    _ body: @Sendable (any KVTransferSender) async throws -> Void
) async throws -> Void

/// The same scenarios run over every transport: the in-memory twin, plaintext and mutual-TLS HTTP/2,
/// shared memory.
enum TransferScenarios {
    static func roundTrip(
        _ make: SenderFactory, expecting transport: KVTransportKind, landing: Bool = false, regions: Bool = false
    ) async throws {
        let receiver = RecordingReceiver(landing: landing)
        try await make(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let produce = regions ? Fixtures.produceAllInRegions(request) : Fixtures.produceAll(request)
            let report = try await sender.transfer(request, produce: produce)
            #expect(report.bytes == request.totalByteCount)
            #expect(report.transport == transport)
        }
        try await eventually { receiver.snapshot.completions.count == 1 }
        let record = receiver.snapshot
        for layer in 0..<4 {
            #expect(record.layers[layer] == Fixtures.layerBytes(layer, count: 6144), "layer \(layer)")
        }
        #expect(record.completions == [Fixtures.completion()])
        #expect(record.failures.isEmpty)
        #expect(record.reserved.isEmpty)
        #expect(record.landed == (landing ? [0, 1, 2, 3] : []))
    }

    static func identityMismatch(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver()
        try await make(receiver, .none, .seconds(5)) { sender in
            var other = Fixtures.identity
            other.tokenizerHash = "tok-999"
            let request = Fixtures.request(identity: other)
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .incompatible)
            #expect(error?.message.contains("tokenizer hash") == true)
        }
        #expect(receiver.snapshot.begun.isEmpty)
    }

    static func flippedBit(_ make: SenderFactory, landing: Bool = false) async throws {
        let receiver = RecordingReceiver(landing: landing)
        try await make(receiver, KVTransferFaults(flipBit: (layer: 2, byteOffset: 5000)), .seconds(5)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .checksumMismatch)
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        let record = receiver.snapshot
        #expect(record.failures.first?.code == .checksumMismatch)
        #expect(record.layers[2] == nil, "the corrupted layer must never be delivered")
        #expect(record.layers.keys.sorted() == [0, 1])
        #expect(record.completions.isEmpty)
        #expect(record.reserved.isEmpty)
    }

    static func truncated(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver()
        try await make(receiver, KVTransferFaults(truncateAfterLayer: 1), .seconds(5)) { sender in
            let request = Fixtures.request()
            await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        let record = receiver.snapshot
        #expect(record.failures.first?.code == .truncated)
        #expect(record.completions.isEmpty)
        #expect(record.reserved.isEmpty)
    }

    static func silentPeer(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver()
        try await make(receiver, KVTransferFaults(stallAfterLayer: 1), .milliseconds(400)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .timeout)
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        let record = receiver.snapshot
        #expect(record.failures.first?.code == .timeout)
        #expect(record.completions.isEmpty)
        #expect(record.reserved.isEmpty)
    }

    static func cancelled(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver()
        try await make(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request) { transfer in
                    try await transfer.send(layer: 0, bytes: Fixtures.layerBytes(0, count: 6144))
                    throw CancellationError()
                }
            }
            #expect(error?.code == .cancelled)
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        let record = receiver.snapshot
        #expect(record.failures.first?.code == .cancelled)
        #expect(record.reserved.isEmpty)
    }

    static func refused(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver(refuse: true)
        try await make(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .refused)
        }
    }

    static func receiverRejectsLayer(_ make: SenderFactory) async throws {
        let receiver = RecordingReceiver(failOnLayer: 1)
        try await make(receiver, .none, .seconds(5)) { sender in
            let request = Fixtures.request()
            let error = await #expect(throws: KVTransportError.self) {
                try await sender.transfer(request, produce: Fixtures.produceAll(request))
            }
            #expect(error?.code == .cancelled)
        }
        try await eventually { receiver.snapshot.failures.count == 1 }
        #expect(receiver.snapshot.reserved.isEmpty)
    }
}

/// Waits (up to 5 s) for `condition`: the receiving side finishes on its own task.
func eventually(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() {
        if ContinuousClock.now > deadline {
            Issue.record("condition not met within 5 s", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
