import ClusterProtocol

// Conversions between the transport's value types and the generated `baton.v1` messages, checked once
// at the boundary.

extension KVCompatibilityIdentity {
    var proto: Baton_V1_CompatibilityIdentity {
        var message = Baton_V1_CompatibilityIdentity()
        message.protocolVersion = protocolVersion
        message.modelFingerprint = modelFingerprint
        message.tokenizerHash = tokenizerHash
        message.architecture = architecture
        message.layout.layers = UInt32(clamping: layers)
        message.layout.kvHeads = UInt32(clamping: kvHeads)
        message.layout.headDim = UInt32(clamping: headDim)
        message.layout.blockSize = UInt32(clamping: blockSize)
        message.layout.dataType = elementType == .f16 ? .f16 : .f32
        return message
    }

    init(proto message: Baton_V1_CompatibilityIdentity) throws(KVTransportError) {
        let elementType: KVElementType
        switch message.layout.dataType {
        case .f16: elementType = .f16
        case .f32: elementType = .f32
        default:
            throw KVTransportError(.protocolViolation, "handshake names an unknown KV data type (\(message.layout.dataType.rawValue))")
        }
        self.init(
            protocolVersion: message.protocolVersion, architecture: message.architecture,
            modelFingerprint: message.modelFingerprint, tokenizerHash: message.tokenizerHash, layers: Int(message.layout.layers),
            kvHeads: Int(message.layout.kvHeads), headDim: Int(message.layout.headDim),
            elementType: elementType, blockSize: Int(message.layout.blockSize))
    }
}

extension KVTransportCapabilities {
    var proto: Baton_V1_TransportCapabilities {
        var message = Baton_V1_TransportCapabilities()
        message.hostID = hostID
        message.sharedMemory = sharedMemory
        message.rdma = rdma
        return message
    }

    init(proto message: Baton_V1_TransportCapabilities) {
        self.init(hostID: message.hostID, sharedMemory: message.sharedMemory, rdma: message.rdma)
    }
}

extension KVTransportKind {
    public var proto: Baton_V1_TransportKind {
        switch self {
        case .rdma: .rdma
        case .sharedMemory: .sharedMemory
        case .tlsHTTP2: .tlsHTTP2
        case .plaintextHTTP2: .plaintextHTTP2
        }
    }

    public init(proto kind: Baton_V1_TransportKind) throws(KVTransportError) {
        switch kind {
        case .rdma: self = .rdma
        case .sharedMemory: self = .sharedMemory
        case .tlsHTTP2: self = .tlsHTTP2
        case .plaintextHTTP2: self = .plaintextHTTP2
        default: throw KVTransportError(.protocolViolation, "peer chose an unknown transport (\(kind.rawValue))")
        }
    }
}

extension KVTransferCompletion {
    /// The completion frame's header; the logits travel as its payload (`logitBytes`).
    func proto(requestID: String) -> Baton_V1_TransferCompletion {
        var message = Baton_V1_TransferCompletion()
        message.requestID = requestID
        message.tokenCount = UInt32(clamping: tokenCount)
        message.logitsCount = UInt32(clamping: logits.count)
        message.logitsCrc32C = logits.withUnsafeBytes { CRC32C.checksum($0) }
        return message
    }

    /// The header's completion with the logits read from its payload, checked against the header's count and
    /// checksum.
    init(proto message: Baton_V1_TransferCompletion, payload: UnsafeRawBufferPointer) throws(KVTransportError) {
        guard payload.count == Int(message.logitsCount) * MemoryLayout<Float>.size else {
            throw KVTransportError(
                .protocolViolation,
                "completion announces \(message.logitsCount) logits but carries \(payload.count) bytes")
        }
        guard CRC32C.checksum(payload) == message.logitsCrc32C else {
            throw KVTransportError(.checksumMismatch, "the completion's logits do not match their CRC32C")
        }
        let logits = [Float](unsafeUninitializedCapacity: Int(message.logitsCount)) { buffer, count in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: payload)
            count = Int(message.logitsCount)
        }
        self.init(tokenCount: Int(message.tokenCount), logits: logits.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) })
    }
}

extension KVTransportError.Code {
    var proto: Baton_V1_TransferError.Code {
        switch self {
        case .incompatible: .incompatible
        case .checksumMismatch: .checksumMismatch
        case .protocolViolation, .truncated: .protocolViolation
        case .cancelled: .cancelled
        case .timeout: .timeout
        case .refused: .resourceExhausted
        default: .internal
        }
    }

    init(proto code: Baton_V1_TransferError.Code) {
        switch code {
        case .incompatible: self = .incompatible
        case .checksumMismatch: self = .checksumMismatch
        case .protocolViolation: self = .protocolViolation
        case .cancelled: self = .cancelled
        case .timeout: self = .timeout
        case .resourceExhausted: self = .refused
        default: self = .connectionFailed
        }
    }
}

extension KVTransportError {
    func proto(requestID: String) -> Baton_V1_TransferError {
        var message = Baton_V1_TransferError()
        message.requestID = requestID
        message.code = code.proto
        message.message = self.message
        return message
    }

    /// The peer's error, reported on this side.
    init(peer message: Baton_V1_TransferError) {
        self.init(Code(proto: message.code), "peer: \(message.message)")
    }
}
