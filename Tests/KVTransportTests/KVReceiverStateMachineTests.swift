import ClusterProtocol
@testable import KVTransport
import Testing

@Suite("Receiver state machine")
struct KVReceiverStateMachineTests {
    let capabilities = KVTransportCapabilities(hostID: "h", sharedMemory: false, rdma: false)

    func machine(identity: KVCompatibilityIdentity = Fixtures.identity) -> KVReceiverStateMachine {
        KVReceiverStateMachine(
            identity: identity, capabilities: capabilities, policy: KVTransportPolicy(), connectionIsTLS: true,
            maximumChunkBytes: 4096)
    }

    func handshake(_ request: KVTransferRequest) -> Baton_V1_TransferHandshake {
        var message = Baton_V1_TransferHandshake()
        message.requestID = request.requestID
        message.identity.protocolVersion = request.identity.protocolVersion
        message.identity.modelFingerprint = request.identity.modelFingerprint
        message.identity.tokenizerHash = request.identity.tokenizerHash
        message.identity.architecture = request.identity.architecture
        message.identity.layout.layers = UInt32(request.identity.layers)
        message.identity.layout.kvHeads = UInt32(request.identity.kvHeads)
        message.identity.layout.headDim = UInt32(request.identity.headDim)
        message.identity.layout.blockSize = UInt32(request.identity.blockSize)
        message.identity.layout.dataType = request.identity.elementType == .f16 ? .f16 : .f32
        message.tokenCount = UInt32(request.tokenCount)
        message.firstToken = UInt32(request.firstToken)
        message.layerByteCount = UInt64(request.layerByteCount)
        return message
    }

    @Test("A transfer that starts after the receiver's cached prefix carries only the blocks from there on")
    func transferFromAPosition() {
        var m = machine()
        // 40 tokens from position 32: the third block alone, 2048 bytes per layer.
        let request = KVTransferRequest(requestID: "req-1", identity: Fixtures.identity, tokenCount: 40, firstToken: 32)
        #expect(request.layerByteCount == 2048)
        #expect(m.receiveHandshake(handshake(request)) == .accept(request, .tlsHTTP2))
        #expect(m.receiveChunk(chunk(layer: 0, offset: 0, length: 2048, crc: 7), payloadLength: 2048) == .none)
        #expect(m.chunkEnded(crc32c: 7) == .deliverLayer(0))
    }

    @Test("A handshake whose first position is not a block boundary below the token count is refused", arguments: [5, 40, 48])
    func misplacedFirstToken(first: Int) {
        var m = machine()
        var message = handshake(Fixtures.request())
        message.firstToken = UInt32(first)
        guard case .fail(.protocolViolation, let text, notifyPeer: true) = m.receiveHandshake(message) else {
            Issue.record("first token \(first) accepted")
            return
        }
        #expect(text.contains("first token \(first) must be a multiple of the block size 16 below the 40 tokens"), "\(text)")
    }

    @Test("A handshake whose layer size does not match its first position is refused")
    func layerSizeFromFirstToken() {
        var m = machine()
        var message = handshake(Fixtures.request())
        message.firstToken = 16
        guard case .fail(.protocolViolation, let text, _) = m.receiveHandshake(message) else {
            Issue.record("a whole-sequence layer size accepted for a transfer from position 16")
            return
        }
        #expect(text.contains("layer size 6144 bytes where 40 tokens from position 16 make 4096"), "\(text)")
    }

    func chunk(layer: Int, offset: Int, length: Int, crc: UInt32, id: String = "req-1") -> Baton_V1_KVChunk {
        var message = Baton_V1_KVChunk()
        message.requestID = id
        message.layer = UInt32(layer)
        message.offset = UInt64(offset)
        message.length = UInt32(length)
        message.crc32C = crc
        return message
    }

    static let logits: [Float] = [0.5, -1, 2]

    func completion(tokens: Int, id: String = "req-1") -> Baton_V1_TransferCompletion {
        KVTransferCompletion(tokenCount: tokens, logits: Self.logits).proto(requestID: id)
    }

    /// Feeds a completion and its logits payload.
    func complete(_ m: inout KVReceiverStateMachine, _ message: Baton_V1_TransferCompletion, logits: [Float] = logits) -> KVReceiverStateMachine.Action {
        logits.withUnsafeBytes { m.receiveCompletion(message, payload: $0) }
    }

    @Test("A transfer goes handshake → waiting → transferring → done, delivering each verified layer")
    func happyPath() {
        var m = machine()
        let request = Fixtures.request()
        #expect(m.state == .handshake)
        #expect(m.receiveHandshake(handshake(request)) == .accept(request, .tlsHTTP2))
        #expect(m.state == .waiting)
        for layer in 0..<4 {
            #expect(m.receiveChunk(chunk(layer: layer, offset: 0, length: 4096, crc: 1), payloadLength: 4096) == .none)
            #expect(m.state == .transferring(layer: layer, offset: 0))
            #expect(m.chunkEnded(crc32c: 1) == .none)
            #expect(m.receiveChunk(chunk(layer: layer, offset: 4096, length: 2048, crc: 2), payloadLength: 2048) == .none)
            #expect(m.chunkEnded(crc32c: 2) == .deliverLayer(layer))
        }
        let action = complete(&m, completion(tokens: 40))
        guard case .complete(let done) = action else {
            Issue.record("expected completion, got \(action)")
            return
        }
        #expect(done.logits == Self.logits)
        #expect(m.state == .done)
    }

    @Test("A different model fingerprint is refused at the handshake, naming the difference")
    func identityMismatch() {
        var m = machine()
        var other = Fixtures.identity
        other.modelFingerprint = "model-xyz"
        let action = m.receiveHandshake(handshake(Fixtures.request(identity: other)))
        guard case .fail(let code, let message, let notify) = action else {
            Issue.record("expected failure, got \(action)")
            return
        }
        #expect(code == .incompatible)
        #expect(message.contains("model fingerprint: local model-abc, peer model-xyz"))
        #expect(notify)
    }

    @Test("KV of another architecture is refused at the handshake, naming both")
    func architectureMismatch() {
        var m = machine()
        var other = Fixtures.identity
        other.architecture = "gemma3"
        let request = Fixtures.request(identity: other)
        guard case .fail(.incompatible, let message, _) = m.receiveHandshake(handshake(request)) else {
            Issue.record("expected an incompatible failure")
            return
        }
        #expect(message.contains("architecture: local llama, peer gemma3"))
    }

    @Test("A protocol version from the future is refused")
    func protocolVersion() {
        var m = machine()
        var other = Fixtures.identity
        other.protocolVersion = BatonProtocol.version + 1
        guard case .fail(.incompatible, let message, _) = m.receiveHandshake(handshake(Fixtures.request(identity: other))) else {
            Issue.record("expected an incompatible failure")
            return
        }
        #expect(message.contains("protocol version"))
    }

    @Test("A layer size that does not match the token count is a protocol violation")
    func layerSize() {
        var m = machine()
        var message = handshake(Fixtures.request())
        message.layerByteCount += 1
        guard case .fail(.protocolViolation, _, _) = m.receiveHandshake(message) else {
            Issue.record("expected a protocol violation")
            return
        }
    }

    @Test("A checksum mismatch fails the transfer before the layer is delivered")
    func checksum() {
        var m = machine()
        _ = m.receiveHandshake(handshake(Fixtures.request()))
        _ = m.receiveChunk(chunk(layer: 0, offset: 0, length: 4096, crc: 0xAAAA), payloadLength: 4096)
        let action = m.chunkEnded(crc32c: 0xBBBB)
        guard case .fail(.checksumMismatch, let message, true) = action else {
            Issue.record("expected a checksum failure, got \(action)")
            return
        }
        #expect(message.contains("0000aaaa"))
        #expect(m.isFinished)
    }

    @Test("Chunks out of order, past the layer or too large are refused")
    func order() {
        var m = machine()
        _ = m.receiveHandshake(handshake(Fixtures.request()))
        guard case .fail(.protocolViolation, _, _) = m.receiveChunk(chunk(layer: 1, offset: 0, length: 4096, crc: 0), payloadLength: 4096) else {
            Issue.record("layer 1 before layer 0 must fail")
            return
        }
        var n = machine()
        _ = n.receiveHandshake(handshake(Fixtures.request()))
        guard case .fail(.protocolViolation, _, _) = n.receiveChunk(chunk(layer: 0, offset: 0, length: 8192, crc: 0), payloadLength: 8192) else {
            Issue.record("a chunk over the limit must fail")
            return
        }
        var o = machine()
        _ = o.receiveHandshake(handshake(Fixtures.request()))
        _ = o.receiveChunk(chunk(layer: 0, offset: 0, length: 4096, crc: 0), payloadLength: 4096)
        _ = o.chunkEnded(crc32c: 0)
        guard case .fail(.protocolViolation, _, _) = o.receiveChunk(chunk(layer: 0, offset: 4096, length: 4096, crc: 0), payloadLength: 4096) else {
            Issue.record("a chunk past the end of the layer must fail")
            return
        }
    }

    @Test("A completion before every layer arrived is refused")
    func earlyCompletion() {
        var m = machine()
        _ = m.receiveHandshake(handshake(Fixtures.request()))
        guard case .fail(.protocolViolation, let message, _) = complete(&m, completion(tokens: 40)) else {
            Issue.record("expected a protocol violation")
            return
        }
        #expect(message.contains("0 of 4 layers"))
    }

    @Test("A completion whose logits do not match their count or checksum fails the transfer")
    func corruptLogits() {
        func delivered() -> KVReceiverStateMachine {
            var m = machine()
            _ = m.receiveHandshake(handshake(Fixtures.request()))
            for layer in 0..<4 {
                _ = m.receiveChunk(chunk(layer: layer, offset: 0, length: 4096, crc: 1), payloadLength: 4096)
                _ = m.chunkEnded(crc32c: 1)
                _ = m.receiveChunk(chunk(layer: layer, offset: 4096, length: 2048, crc: 2), payloadLength: 2048)
                _ = m.chunkEnded(crc32c: 2)
            }
            return m
        }
        var short = delivered()
        guard case .fail(.protocolViolation, let message, _) = complete(&short, completion(tokens: 40), logits: [1]) else {
            Issue.record("expected a protocol violation for a short payload")
            return
        }
        #expect(message.contains("announces 3 logits"))
        var flipped = delivered()
        guard case .fail(.checksumMismatch, _, true) = complete(&flipped, completion(tokens: 40), logits: [0.5, -1, 2.5]) else {
            Issue.record("expected a checksum mismatch, told to the sender")
            return
        }
    }

    @Test("The stream ending or going silent mid-transfer fails it")
    func truncationAndTimeout() {
        var m = machine()
        _ = m.receiveHandshake(handshake(Fixtures.request()))
        guard case .fail(.truncated, _, false) = m.streamEnded() else {
            Issue.record("expected truncation")
            return
        }
        var n = machine()
        _ = n.receiveHandshake(handshake(Fixtures.request()))
        guard case .fail(.timeout, _, true) = n.timedOut(after: 2) else {
            Issue.record("expected a timeout")
            return
        }
        #expect(n.streamEnded() == .none)
    }

    @Test("A peer's cancellation fails the transfer without answering")
    func peerCancel() {
        var m = machine()
        _ = m.receiveHandshake(handshake(Fixtures.request()))
        var error = Baton_V1_TransferError()
        error.code = .cancelled
        error.message = "client went away"
        guard case .fail(.cancelled, let message, false) = m.receivePeerError(error) else {
            Issue.record("expected cancellation")
            return
        }
        #expect(message == "peer: client went away")
    }
}

@Suite("Sender state machine")
struct KVSenderStateMachineTests {
    func accepted() -> KVSenderStateMachine {
        var m = KVSenderStateMachine(request: Fixtures.request())
        _ = m.start()
        var accept = Baton_V1_HandshakeAccept()
        accept.requestID = "req-1"
        accept.transport = .tlsHTTP2
        _ = m.receiveAccept(accept)
        return m
    }

    @Test("The sender goes idle → handshake → transferring → completing → done")
    func happyPath() {
        var m = KVSenderStateMachine(request: Fixtures.request())
        #expect(m.start() == .sendHandshake(Fixtures.request()))
        var accept = Baton_V1_HandshakeAccept()
        accept.requestID = "req-1"
        accept.transport = .tlsHTTP2
        #expect(m.receiveAccept(accept) == .beginTransfer(.tlsHTTP2, sharedMemoryName: ""))
        for layer in 0..<4 { #expect(m.sendLayer(layer, byteCount: 6144) == .sendLayer(layer)) }
        #expect(m.finish(Fixtures.completion()) == .sendCompletion(Fixtures.completion()))
        var result = Baton_V1_TransferResult()
        result.requestID = "req-1"
        result.bytesReceived = 4 * 6144
        #expect(m.receiveResult(result) == .finished(bytes: 4 * 6144))
        #expect(m.state == .done)
    }

    @Test("Layers must go in order with the announced size")
    func order() {
        var m = accepted()
        guard case .fail(.invalidArgument, _, true) = m.sendLayer(1, byteCount: 6144) else {
            Issue.record("layer 1 first must fail")
            return
        }
        var n = accepted()
        guard case .fail(.invalidArgument, _, _) = n.sendLayer(0, byteCount: 100) else {
            Issue.record("a short layer must fail")
            return
        }
    }

    @Test("Finishing before every layer was sent fails")
    func earlyFinish() {
        var m = accepted()
        _ = m.sendLayer(0, byteCount: 6144)
        guard case .fail(.invalidArgument, let message, _) = m.finish(Fixtures.completion()) else {
            Issue.record("expected failure")
            return
        }
        #expect(message == "finish after 1 of 4 layers")
    }

    @Test("A shared-memory accept must name the object")
    func sharedMemoryName() {
        var m = KVSenderStateMachine(request: Fixtures.request())
        _ = m.start()
        var accept = Baton_V1_HandshakeAccept()
        accept.requestID = "req-1"
        accept.transport = .sharedMemory
        guard case .fail(.protocolViolation, _, _) = m.receiveAccept(accept) else {
            Issue.record("expected a protocol violation")
            return
        }
    }
}
