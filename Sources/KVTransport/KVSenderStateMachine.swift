import ClusterProtocol

/// The sending side of one transfer as a value type: it enforces the call order and checks the
/// receiver's answers; the transport performs the I/O.
///
///     idle ──start──▶ handshake ──accepted──▶ transferring(next layer) ──finish──▶ completing ──result──▶ done
///                         │                         │                                 │
///                         └─────────────────────────┴─────────────────────────────────┴──▶ failed
public struct KVSenderStateMachine: Sendable {
    public enum State: Sendable, Equatable {
        case idle
        /// Handshake sent, waiting for the receiver's answer.
        case handshake
        /// Accepted; `nextLayer` is the next layer the producer must send.
        case transferring(nextLayer: Int)
        /// Completion sent, waiting for the receiver's result.
        case completing
        case done
        case failed(code: KVTransportError.Code, message: String)
    }

    public enum Action: Sendable, Equatable {
        case none
        /// Send the handshake frame.
        case sendHandshake(KVTransferRequest)
        /// The receiver accepted over this transport (with a shared-memory object name when relevant).
        case beginTransfer(KVTransportKind, sharedMemoryName: String)
        /// Send this layer.
        case sendLayer(Int)
        /// Send the completion frame.
        case sendCompletion(KVTransferCompletion)
        /// The receiver confirmed everything.
        case finished(bytes: Int)
        /// Stop; tell the receiver when `notifyPeer`.
        case fail(KVTransportError.Code, String, notifyPeer: Bool)
    }

    public private(set) var state: State = .idle
    public let request: KVTransferRequest
    public private(set) var transport: KVTransportKind?

    public init(request: KVTransferRequest) {
        self.request = request
    }

    public var isFinished: Bool {
        switch state {
        case .done, .failed: true
        default: false
        }
    }

    public var failure: KVTransportError? {
        if case .failed(let code, let message) = state { return KVTransportError(code, message) }
        return nil
    }

    public mutating func start() -> Action {
        guard case .idle = state else { return misuse("start called twice") }
        guard request.tokenCount > 0 else { return fail(.invalidArgument, "a transfer needs at least one token", notifyPeer: false) }
        do { _ = try request.identity.validated() } catch { return fail(error.code, error.message, notifyPeer: false) }
        if let problem = request.firstTokenProblem { return fail(.invalidArgument, "request \(request.requestID): \(problem)", notifyPeer: false) }
        state = .handshake
        return .sendHandshake(request)
    }

    public mutating func receiveAccept(_ accept: Baton_V1_HandshakeAccept) -> Action {
        guard case .handshake = state else { return violation("an accept frame out of place") }
        guard accept.requestID == request.requestID else { return violation("an accept for request \(accept.requestID)") }
        let kind: KVTransportKind
        do { kind = try KVTransportKind(proto: accept.transport) } catch { return fail(error.code, error.message, notifyPeer: true) }
        if kind == .sharedMemory && accept.sharedMemoryName.isEmpty {
            return violation("a shared-memory accept without an object name")
        }
        transport = kind
        state = .transferring(nextLayer: 0)
        return .beginTransfer(kind, sharedMemoryName: accept.sharedMemoryName)
    }

    /// The producer offers `layer` with `byteCount` bytes.
    public mutating func sendLayer(_ layer: Int, byteCount: Int) -> Action {
        guard case .transferring(let next) = state else {
            if let failure { return .fail(failure.code, failure.message, notifyPeer: false) }
            return misuse("layer \(layer) sent outside a transfer")
        }
        guard layer == next else { return misuse("layer \(layer) sent where layer \(next) is due") }
        guard byteCount == request.layerByteCount else {
            return misuse("layer \(layer) has \(byteCount) bytes; the handshake announced \(request.layerByteCount)")
        }
        state = .transferring(nextLayer: next + 1)
        return .sendLayer(layer)
    }

    public mutating func finish(_ completion: KVTransferCompletion) -> Action {
        guard case .transferring(let next) = state else {
            if let failure { return .fail(failure.code, failure.message, notifyPeer: false) }
            return misuse("finish called outside a transfer")
        }
        guard next == request.identity.layers else {
            return misuse("finish after \(next) of \(request.identity.layers) layers")
        }
        guard completion.tokenCount == request.tokenCount else {
            return misuse("completion for \(completion.tokenCount) tokens; the handshake announced \(request.tokenCount)")
        }
        state = .completing
        return .sendCompletion(completion)
    }

    public mutating func receiveResult(_ result: Baton_V1_TransferResult) -> Action {
        guard case .completing = state else { return violation("a result frame out of place") }
        guard result.requestID == request.requestID, result.bytesReceived == UInt64(request.totalByteCount) else {
            return violation("a result for \(result.bytesReceived) bytes of request \(result.requestID), expected \(request.totalByteCount)")
        }
        state = .done
        return .finished(bytes: request.totalByteCount)
    }

    public mutating func receivePeerError(_ error: Baton_V1_TransferError) -> Action {
        guard !isFinished else { return .none }
        let peer = KVTransportError(peer: error)
        return fail(peer.code, peer.message, notifyPeer: false)
    }

    public mutating func streamEnded() -> Action {
        guard !isFinished else { return .none }
        return fail(.truncated, "the receiver closed the stream before confirming request \(request.requestID)", notifyPeer: false)
    }

    public mutating func timedOut(after seconds: Double, waitingFor what: String) -> Action {
        guard !isFinished else { return .none }
        return fail(.timeout, "no progress for \(seconds) s waiting for \(what)", notifyPeer: true)
    }

    /// The producer gave up or was cancelled.
    public mutating func abort(_ code: KVTransportError.Code, _ message: String) -> Action {
        guard !isFinished else { return .none }
        return fail(code, message, notifyPeer: true)
    }

    private mutating func violation(_ what: String) -> Action {
        fail(.protocolViolation, "unexpected \(what)", notifyPeer: true)
    }

    private mutating func misuse(_ what: String) -> Action {
        fail(.invalidArgument, what, notifyPeer: true)
    }

    private mutating func fail(_ code: KVTransportError.Code, _ message: String, notifyPeer: Bool) -> Action {
        state = .failed(code: code, message: message)
        return .fail(code, message, notifyPeer: notifyPeer)
    }
}
