import RPC
import KVTransport
import Synchronization

/// A decode side that records what reaches it, so tests can check that bad KV never does and that a
/// failed transfer frees what it reserved.
final class RecordingReceiver: KVTransferReceiver, Sendable {
    struct Record: Sendable {
        var begun: [String] = []
        var layers: [Int: [UInt8]] = [:]
        var completions: [KVTransferCompletion] = []
        var failures: [KVTransportError] = []
        /// Requests whose reservation is still held (begun, neither completed nor failed).
        var reserved: Set<String> = []
        var transports: [KVTransportKind] = []
        /// Layers that arrived through a landing zone (`layerLanded`) rather than `receiveLayer`.
        var landed: [Int] = []
    }

    let record = Mutex(Record())
    let refuse: Bool
    let failOnLayer: Int?
    /// Whether transfers offer a landing zone: each layer in three unevenly sized regions.
    let landing: Bool

    init(refuse: Bool = false, failOnLayer: Int? = nil, landing: Bool = false) {
        self.refuse = refuse
        self.failOnLayer = failOnLayer
        self.landing = landing
    }

    var snapshot: Record { record.withLock { $0 } }

    func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        if refuse { throw KVTransportError(.refused, "no room") }
        record.withLock {
            $0.begun.append(request.requestID)
            $0.reserved.insert(request.requestID)
            $0.transports.append(transport)
        }
        return Inbound(owner: self, requestID: request.requestID, layers: request.identity.layers, layerBytes: request.layerByteCount)
    }

    final class Inbound: KVInboundTransfer, @unchecked Sendable {
        let owner: RecordingReceiver
        let requestID: String
        /// One buffer per layer, handed out as a landing zone (written only by the transport's task).
        let landingBuffers: [UnsafeMutableRawBufferPointer]

        init(owner: RecordingReceiver, requestID: String, layers: Int, layerBytes: Int) {
            self.owner = owner
            self.requestID = requestID
            landingBuffers = owner.landing ? (0..<layers).map { _ in .allocate(byteCount: layerBytes, alignment: 1) } : []
        }

        deinit { landingBuffers.forEach { $0.deallocate() } }

        func landingZone(forLayer layer: Int) -> KVLandingZone? {
            guard owner.landing, landingBuffers.indices.contains(layer) else { return nil }
            let buffer = landingBuffers[layer]
            // Uneven regions that no chunk boundary lines up with, to exercise the scatter.
            let first = min(1000, buffer.count), second = min(first + 4001, buffer.count)
            return KVLandingZone(regions: [
                UnsafeMutableRawBufferPointer(rebasing: buffer[0..<first]),
                UnsafeMutableRawBufferPointer(rebasing: buffer[first..<second]),
                UnsafeMutableRawBufferPointer(rebasing: buffer[second...]),
            ])
        }

        func layerLanded(_ layer: Int) async throws {
            if owner.failOnLayer == layer { throw KVTransportError(.refused, "cannot store layer \(layer)") }
            let copy = Array(UnsafeRawBufferPointer(landingBuffers[layer]))
            owner.record.withLock {
                $0.layers[layer] = copy
                $0.landed.append(layer)
            }
        }

        func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws {
            if owner.failOnLayer == layer { throw KVTransportError(.refused, "cannot store layer \(layer)") }
            let copy = Array(bytes)
            owner.record.withLock { $0.layers[layer] = copy }
        }

        func complete(_ completion: KVTransferCompletion) async throws {
            owner.record.withLock {
                $0.completions.append(completion)
                $0.reserved.remove(requestID)
            }
        }

        func fail(_ error: KVTransportError) async {
            owner.record.withLock {
                $0.failures.append(error)
                $0.reserved.remove(requestID)
            }
        }
    }
}

enum Fixtures {
    static let identity = KVCompatibilityIdentity(
        architecture: "llama", modelFingerprint: "model-abc", tokenizerHash: "tok-123", layers: 4, kvHeads: 2, headDim: 16,
        elementType: .f16, blockSize: 16)

    /// 40 tokens → 3 blocks → 6144 bytes per layer.
    static func request(_ id: String = "req-1", tokens: Int = 40, identity: KVCompatibilityIdentity = identity) -> KVTransferRequest {
        KVTransferRequest(requestID: id, identity: identity, tokenCount: tokens)
    }

    /// Deterministic bytes for layer `layer`.
    static func layerBytes(_ layer: Int, count: Int) -> [UInt8] {
        var state = UInt64(layer + 1) &* 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    /// A completion whose logits are a recognisable pattern (a real vocabulary's worth: 49 152).
    static func completion(tokens: Int = 40) -> KVTransferCompletion {
        KVTransferCompletion(tokenCount: tokens, logits: (0..<49_152).map { Float($0 % 97) - 48.5 })
    }

    /// Sends every layer of `request` as three unevenly sized regions (as a paged cache's blocks), then
    /// the completion.
    static func produceAllInRegions(_ request: KVTransferRequest) -> (KVOutboundTransfer) async throws -> KVTransferCompletion {
        { transfer in
            for layer in 0..<request.identity.layers {
                let bytes = layerBytes(layer, count: request.layerByteCount)
                let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
                defer { storage.deallocate() }
                bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
                let cuts = [0, 777, 777 + 4099, bytes.count]
                let regions = zip(cuts, cuts.dropFirst()).map { UnsafeRawBufferPointer(rebasing: storage[$0..<$1]) }
                try await transfer.send(layer: layer, regions: regions)
            }
            return completion(tokens: request.tokenCount)
        }
    }

    /// Sends every layer of `request` then the completion.
    static func produceAll(_ request: KVTransferRequest) -> (KVOutboundTransfer) async throws -> KVTransferCompletion {
        { transfer in
            for layer in 0..<request.identity.layers {
                try await transfer.send(layer: layer, bytes: layerBytes(layer, count: request.layerByteCount))
            }
            return completion(tokens: request.tokenCount)
        }
    }

    static let certificates: (authority: ClusterCertificates.Issued, a: ClusterCertificates.Issued, b: ClusterCertificates.Issued) = {
        let authority = try! ClusterCertificates.makeAuthority()
        // Either node may be either end of a transfer.
        return (authority, try! ClusterCertificates.issueNode("node-a", roles: [.prefill, .decode], authority: authority),
                try! ClusterCertificates.issueNode("node-b", roles: [.prefill, .decode], authority: authority))
    }()

    static func configuration(node: ClusterCertificates.Issued?, hostID: String = "host-test", idleTimeout: Duration = .seconds(5)) -> KVTransportConfiguration {
        var configuration = KVTransportConfiguration(
            tls: node.map { ClusterCertificates.tls(node: $0, authorityPEM: certificates.authority.certificatePEM) },
            policy: KVTransportPolicy(allowSharedMemory: false, insecure: node == nil), hostID: hostID)
        configuration.chunkBytes = 4096
        configuration.idleTimeout = idleTimeout
        return configuration
    }
}
