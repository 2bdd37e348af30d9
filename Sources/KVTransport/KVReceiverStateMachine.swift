import ClusterProtocol

/// The receiving side of one transfer as a value type: it validates what the peer sends and says what to
/// do; the transport performs the I/O.
///
///     handshake ──accept──▶ waiting ──first bytes──▶ transferring ──all layers + completion──▶ done
///         │                    │                          │
///         └────────────────────┴──────────────────────────┴──▶ failed (refused, checksum, order, timeout,
///                                                                      truncation, cancellation)
///
/// Layers arrive in order 0..<layers; each layer's chunks in order of offset with no gaps. A layer is
/// delivered (`deliverLayer`) only after all its chunks matched their CRC32C; a failure after delivery of
/// some layers still means the receiver must free everything (`fail`).
public struct KVReceiverStateMachine: Sendable {
    public enum State: Sendable, Equatable {
        /// Waiting for the sender's handshake.
        case handshake
        /// Handshake accepted; no KV yet.
        case waiting
        /// Receiving `layer`, of which `offset` bytes have been verified.
        case transferring(layer: Int, offset: Int)
        /// Every layer delivered and the completion received.
        case done
        case failed(code: KVTransportError.Code, message: String)
    }

    public enum Action: Sendable, Equatable {
        /// Nothing to do but keep reading.
        case none
        /// Tell the sender the transfer is accepted, over `transport`.
        case accept(KVTransferRequest, KVTransportKind)
        /// Layer `layer` is complete and verified: hand it to the KV cache.
        case deliverLayer(Int)
        /// Everything arrived: finish the import with this completion and acknowledge.
        case complete(KVTransferCompletion)
        /// Give up: free everything received, and tell the peer when `notifyPeer`.
        case fail(KVTransportError.Code, String, notifyPeer: Bool)
    }

    public private(set) var state: State = .handshake
    public private(set) var request: KVTransferRequest?
    public private(set) var transport: KVTransportKind?
    private let identity: KVCompatibilityIdentity
    private let capabilities: KVTransportCapabilities
    private let policy: KVTransportPolicy
    private let connectionIsTLS: Bool
    private let maximumChunkBytes: Int
    /// The chunk being received: its start offset, length and expected CRC32C.
    private var currentChunk: (offset: Int, length: Int, crc: UInt32)?

    public init(
        identity: KVCompatibilityIdentity, capabilities: KVTransportCapabilities, policy: KVTransportPolicy,
        connectionIsTLS: Bool, maximumChunkBytes: Int
    ) {
        self.identity = identity
        self.capabilities = capabilities
        self.policy = policy
        self.connectionIsTLS = connectionIsTLS
        self.maximumChunkBytes = maximumChunkBytes
    }

    public var isFinished: Bool {
        switch state {
        case .done, .failed: true
        default: false
        }
    }

    public mutating func receiveHandshake(_ handshake: Baton_V1_TransferHandshake) -> Action {
        guard case .handshake = state else { return violation("a second handshake") }
        let peerIdentity: KVCompatibilityIdentity
        do { peerIdentity = try KVCompatibilityIdentity(proto: handshake.identity) } catch {
            return fail(error.code, error.message, notifyPeer: true)
        }
        let differences = identity.differences(from: peerIdentity)
        guard differences.isEmpty else {
            return fail(.incompatible, "request \(handshake.requestID) refused: " + differences.joined(separator: "; "), notifyPeer: true)
        }
        guard handshake.tokenCount > 0 else { return violation("a handshake for 0 tokens") }
        let request = KVTransferRequest(
            requestID: handshake.requestID, identity: peerIdentity, tokenCount: Int(handshake.tokenCount),
            firstToken: Int(handshake.firstToken))
        if let problem = request.firstTokenProblem { return violation("a handshake whose \(problem)") }
        guard UInt64(request.layerByteCount) == handshake.layerByteCount else {
            return violation(
                "layer size \(handshake.layerByteCount) bytes where \(handshake.tokenCount) tokens from position \(handshake.firstToken) make \(request.layerByteCount)")
        }
        let kind: KVTransportKind
        do {
            kind = try KVTransportSelection.select(
                local: capabilities, remote: KVTransportCapabilities(proto: handshake.capabilities), policy: policy,
                connectionIsTLS: connectionIsTLS)
        } catch {
            return fail(error.code, error.message, notifyPeer: true)
        }
        self.request = request
        self.transport = kind
        state = .waiting
        return .accept(request, kind)
    }

    /// A chunk header arrived over HTTP/2; its `payloadLength` bytes follow.
    public mutating func receiveChunk(_ chunk: Baton_V1_KVChunk, payloadLength: Int) -> Action {
        guard let request, transport == .tlsHTTP2 || transport == .plaintextHTTP2 else {
            return violation("a KV chunk outside an HTTP/2 transfer")
        }
        guard currentChunk == nil else { return violation("a chunk header inside a chunk") }
        let (layer, offset) = position
        guard chunk.requestID == request.requestID else { return violation("a chunk for request \(chunk.requestID)") }
        guard Int(chunk.layer) == layer, Int(chunk.offset) == offset else {
            return violation("layer \(chunk.layer) offset \(chunk.offset) where layer \(layer) offset \(offset) was due")
        }
        let length = Int(chunk.length)
        guard length > 0, length <= maximumChunkBytes, length == payloadLength + chunk.data.count,
            chunk.data.isEmpty || payloadLength == 0
        else {
            return violation("a chunk of \(chunk.length) bytes with \(payloadLength + chunk.data.count) bytes of data (limit \(maximumChunkBytes))")
        }
        guard offset + length <= request.layerByteCount else {
            return violation("a chunk past the end of layer \(layer) (\(offset + length) > \(request.layerByteCount) bytes)")
        }
        currentChunk = (offset, length, chunk.crc32C)
        state = .transferring(layer: layer, offset: offset)
        return .none
    }

    /// The current chunk's bytes were all received; `crc32c` is what they hash to.
    public mutating func chunkEnded(crc32c: UInt32) -> Action {
        guard let request, let chunk = currentChunk, case .transferring(let layer, _) = state else {
            return violation("chunk bytes without a chunk header")
        }
        currentChunk = nil
        guard crc32c == chunk.crc else {
            return fail(.checksumMismatch, "layer \(layer) bytes \(chunk.offset)..<\(chunk.offset + chunk.length): CRC32C \(hex(crc32c)), expected \(hex(chunk.crc))", notifyPeer: true)
        }
        let end = chunk.offset + chunk.length
        if end == request.layerByteCount {
            state = .transferring(layer: layer + 1, offset: 0)
            return .deliverLayer(layer)
        }
        state = .transferring(layer: layer, offset: end)
        return .none
    }

    /// RDMA was chosen but this side could not set it up (its device refused: no port, no memory to
    /// register): the transfer goes on over the stream it arrived on, as if RDMA had not been offered.
    public mutating func rdmaUnavailable() -> Action {
        guard case .waiting = state, transport == .rdma, let request else {
            return violation("an RDMA fallback outside an RDMA handshake")
        }
        let fallback: KVTransportKind = connectionIsTLS ? .tlsHTTP2 : .plaintextHTTP2
        transport = fallback
        return .accept(request, fallback)
    }

    /// Shared memory / RDMA: the sender says `layer` is written; `crc32c` is what the receiver computed over it.
    public mutating func receiveLayerReady(_ ready: Baton_V1_LayerReady, computedCRC32C crc32c: UInt32) -> Action {
        guard let request, transport == .sharedMemory || transport == .rdma else {
            return violation("a layer-ready notice outside a shared-memory or RDMA transfer")
        }
        let (layer, offset) = position
        guard ready.requestID == request.requestID, Int(ready.layer) == layer, offset == 0 else {
            return violation("layer \(ready.layer) ready where layer \(layer) was due")
        }
        guard crc32c == ready.crc32C else {
            return fail(.checksumMismatch, "layer \(layer): CRC32C \(hex(crc32c)), expected \(hex(ready.crc32C))", notifyPeer: true)
        }
        state = .transferring(layer: layer + 1, offset: 0)
        return .deliverLayer(layer)
    }

    /// The layer the next `LayerReady` must name (shared memory / RDMA), if the transfer is under way.
    public var nextLayer: Int? {
        switch state {
        case .waiting: 0
        case .transferring(let layer, _): layer
        default: nil
        }
    }

    /// The completion's header and its payload (the prompt's last logits).
    public mutating func receiveCompletion(_ completion: Baton_V1_TransferCompletion, payload: UnsafeRawBufferPointer) -> Action {
        guard let request, !isFinished, currentChunk == nil else { return violation("a completion out of place") }
        let (layer, _) = position
        guard layer == request.identity.layers else {
            return violation("completion after \(layer) of \(request.identity.layers) layers")
        }
        guard Int(completion.tokenCount) == request.tokenCount, completion.requestID == request.requestID else {
            return violation("completion for \(completion.tokenCount) tokens of request \(completion.requestID), expected \(request.tokenCount) of \(request.requestID)")
        }
        let parsed: KVTransferCompletion
        do { parsed = try KVTransferCompletion(proto: completion, payload: payload) } catch {
            return error.code == .checksumMismatch ? fail(.checksumMismatch, error.message, notifyPeer: true) : violation(error.message)
        }
        state = .done
        return .complete(parsed)
    }

    public mutating func receivePeerError(_ error: Baton_V1_TransferError) -> Action {
        guard !isFinished else { return .none }
        let peer = KVTransportError(peer: error)
        return fail(peer.code, peer.message, notifyPeer: false)
    }

    /// The stream ended (cleanly or not) before `done`.
    public mutating func streamEnded() -> Action {
        guard !isFinished else { return .none }
        return fail(.truncated, "stream ended \(progressDescription)", notifyPeer: false)
    }

    /// No progress within the timeout.
    public mutating func timedOut(after seconds: Double) -> Action {
        guard !isFinished else { return .none }
        return fail(.timeout, "peer silent for \(seconds) s \(progressDescription)", notifyPeer: true)
    }

    /// The local side gives up (the decode worker cancelled the request or could not store a layer).
    public mutating func abort(_ code: KVTransportError.Code, _ message: String) -> Action {
        guard !isFinished else { return .none }
        return fail(code, message, notifyPeer: true)
    }

    private var position: (layer: Int, offset: Int) {
        switch state {
        case .transferring(let layer, let offset): (layer, offset)
        default: (0, 0)
        }
    }

    private var progressDescription: String {
        switch state {
        case .handshake: "before the handshake"
        case .waiting: "after the handshake, before any KV"
        case .transferring(let layer, let offset): "at layer \(layer) byte \(offset)"
        case .done, .failed: "after the end"
        }
    }

    private mutating func violation(_ what: String) -> Action {
        fail(.protocolViolation, "unexpected \(what)", notifyPeer: true)
    }

    private mutating func fail(_ code: KVTransportError.Code, _ message: String, notifyPeer: Bool) -> Action {
        state = .failed(code: code, message: message)
        currentChunk = nil
        return .fail(code, message, notifyPeer: notifyPeer)
    }
}

extension KVTransferRequest {
    var handshakeProto: Baton_V1_TransferHandshake {
        var message = Baton_V1_TransferHandshake()
        message.requestID = requestID
        message.identity = identity.proto
        message.tokenCount = UInt32(clamping: tokenCount)
        message.firstToken = UInt32(clamping: firstToken)
        message.layerByteCount = UInt64(layerByteCount)
        return message
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}
