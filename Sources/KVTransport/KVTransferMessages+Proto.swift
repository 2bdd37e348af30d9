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
    var proto: Baton_V1_TransportKind {
        switch self {
        case .rdma: .rdma
        case .sharedMemory: .sharedMemory
        case .tlsHTTP2: .tlsHTTP2
        case .plaintextHTTP2: .plaintextHTTP2
        }
    }

    init(proto kind: Baton_V1_TransportKind) throws(KVTransportError) {
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
    func proto(requestID: String) -> Baton_V1_TransferCompletion {
        var message = Baton_V1_TransferCompletion()
        message.requestID = requestID
        message.firstToken = firstToken
        message.tokenCount = UInt32(clamping: tokenCount)
        let rng = samplingState.rngState
        message.samplingState.rngState0 = rng.count > 0 ? rng[0] : 0
        message.samplingState.rngState1 = rng.count > 1 ? rng[1] : 0
        message.samplingState.rngState2 = rng.count > 2 ? rng[2] : 0
        message.samplingState.rngState3 = rng.count > 3 ? rng[3] : 0
        message.samplingState.recentTokens = samplingState.recentTokens
        message.samplingState.parameters = .init(samplingState.parameters)
        if let logprobs = firstTokenLogprobs {
            message.firstTokenLogprobs.logprob = logprobs.logprob
            message.firstTokenLogprobs.topTokens = logprobs.topTokens
            message.firstTokenLogprobs.topLogprobs = logprobs.topLogprobs
        }
        return message
    }

    init(proto message: Baton_V1_TransferCompletion) throws(KVTransportError) {
        let state = message.samplingState
        var logprobs: KVFirstTokenLogprobs?
        if message.hasFirstTokenLogprobs {
            let sent = message.firstTokenLogprobs
            guard sent.topTokens.count == sent.topLogprobs.count else {
                throw KVTransportError(
                    .protocolViolation,
                    "completion with \(sent.topTokens.count) alternative tokens but \(sent.topLogprobs.count) log-probabilities")
            }
            logprobs = KVFirstTokenLogprobs(logprob: sent.logprob, top: Array(zip(sent.topTokens, sent.topLogprobs)))
        }
        self.init(
            firstToken: message.firstToken,
            samplingState: KVSamplingState(
                rngState: [state.rngState0, state.rngState1, state.rngState2, state.rngState3],
                recentTokens: state.recentTokens, parameters: Array(state.parameters)),
            tokenCount: Int(message.tokenCount), firstTokenLogprobs: logprobs)
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
