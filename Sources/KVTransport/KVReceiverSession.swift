import RPC
import ClusterProtocol
import Logging
import NIOCore

/// Runs one transfer's receiving side over a `KVStreamIO`: the I/O half of `KVReceiverStateMachine`.
/// Never throws: every failure is reported to the peer (when it can still hear) and to the
/// `KVInboundTransfer` (`fail`, so it frees its blocks), and every buffer is released on return.
final class KVReceiverSession {
    struct Settings {
        var identity: KVCompatibilityIdentity
        var capabilities: KVTransportCapabilities
        var policy: KVTransportPolicy
        var connectionIsTLS: Bool
        var maximumChunkBytes: Int
        var idleTimeout: Duration
        var rdma = RDMASettings()
    }

    private let io: any KVStreamIO
    private var machine: KVReceiverStateMachine
    private let receiver: any KVTransferReceiver
    private let watchdog: Watchdog
    private let logger: Logger
    private var decoder: KVFrameDecoder
    private var inbound: (any KVInboundTransfer)?
    /// One layer's bytes (HTTP/2 transports, when the receiver offers no landing zone): filled chunk by
    /// chunk, delivered once verified.
    private var staging: UnsafeMutableRawBufferPointer?
    /// Where the current layer's chunks are written (HTTP/2 transports): the receiver's landing zone, or
    /// `staging`; and whether it is the landing zone.
    private var destination = LayerWriter()
    private var landed = false
    private var region: SharedMemoryRegion?
    private var rdma: RDMAReceiveEndpoint?
    /// The sender's queue pair, from its handshake (RDMA transfers).
    private var senderEndpoint: Baton_V1_RDMAEndpoint?
    private let settings: Settings
    private var chunkCRC = CRC32C()
    private var chunkWriteOffset = 0
    private var bytesReceived = 0
    /// A failure after the machine reached `done` (the decode side could not finish).
    private var lateFailure: KVTransportError?
    /// The completion frame being read: its header, and its payload (the logits) gathered as it arrives.
    private var completion: (header: Baton_V1_TransferCompletion, payload: [UInt8])?

    init(io: any KVStreamIO, settings: Settings, receiver: any KVTransferReceiver, logger: Logger) {
        self.io = io
        self.settings = settings
        self.machine = KVReceiverStateMachine(
            identity: settings.identity, capabilities: settings.capabilities, policy: settings.policy,
            connectionIsTLS: settings.connectionIsTLS, maximumChunkBytes: settings.maximumChunkBytes)
        self.decoder = KVFrameDecoder(maximumPayloadLength: settings.maximumChunkBytes)
        self.receiver = receiver
        self.watchdog = Watchdog(timeout: settings.idleTimeout)
        self.logger = logger
    }

    /// Receives until the transfer is done or failed. Returns the failure, if any (already handled).
    @discardableResult
    func run() async -> KVTransportError? {
        // When the sender goes silent, tell it why before closing: its side may be blocked reading.
        let timeoutError = KVTransportError(.timeout, "the receiver heard nothing for \(watchdog.seconds) s")
        let onFire = (try? KVFrame.buffer(.error, timeoutError.proto(requestID: ""))).map { io.abort(sendingFirst: $0) } ?? io.abort
        let watch = watchdog.start(onFire: onFire)
        defer {
            watch.cancel()
            staging?.deallocate()
            staging = nil
            if let region { SharedMemoryRegionCache.receiving.giveBack(region) }
            region = nil
            rdma?.close()
            rdma = nil
        }
        while !machine.isFinished {
            let next: ByteBuffer?
            do { next = try await io.read() } catch { next = nil }
            guard var input = next else {
                let action = watchdog.fired ? machine.timedOut(after: watchdog.seconds) : machine.streamEnded()
                await perform(action)
                break
            }
            watchdog.touch()
            do throws(KVTransportError) {
                while !machine.isFinished, let event = try decoder.next(&input) {
                    await perform(try await handle(event))
                }
            } catch {
                await perform(machine.abort(error.code, error.message))
            }
        }
        if case .failed(let code, let message) = machine.state { return KVTransportError(code, message) }
        return lateFailure
    }

    private func handle(_ event: KVFrameDecoder.Event) async throws(KVTransportError) -> KVReceiverStateMachine.Action {
        switch event {
        case .frame(.handshake, let header, _):
            let handshake = try KVFrame.decode(Baton_V1_TransferHandshake.self, from: header)
            if handshake.capabilities.hasRdmaEndpoint { senderEndpoint = handshake.capabilities.rdmaEndpoint }
            return machine.receiveHandshake(handshake)
        case .frame(.chunk, let header, let payloadLength):
            let chunk = try KVFrame.decode(Baton_V1_KVChunk.self, from: header)
            let action = machine.receiveChunk(chunk, payloadLength: payloadLength)
            guard action == .none else { return action }
            guard let request = machine.request, inbound != nil else {
                return machine.abort(.protocolViolation, "a chunk before the transfer was set up")
            }
            if chunk.offset == 0 {
                let failure = prepareDestination(layer: Int(chunk.layer), request)
                guard failure == .none else { return failure }
            }
            chunkCRC = CRC32C()
            chunkWriteOffset = Int(chunk.offset)
            if !chunk.data.isEmpty {
                chunk.data.withUnsafeBytes { store($0) }
            }
            return .none
        case .payload(let piece):
            if completion != nil {
                completion!.payload.append(contentsOf: piece.readableBytesView)
                return .none
            }
            guard chunkWriteOffset + piece.readableBytes <= destination.byteCount else {
                return machine.abort(.protocolViolation, "chunk bytes outside a chunk")
            }
            piece.withUnsafeReadableBytes { store($0) }
            return .none
        case .payloadEnd:
            if let (header, payload) = completion {
                completion = nil
                return payload.withUnsafeBytes { machine.receiveCompletion(header, payload: $0) }
            }
            return machine.chunkEnded(crc32c: chunkCRC.value)
        case .frame(.layerReady, let header, _):
            let ready = try KVFrame.decode(Baton_V1_LayerReady.self, from: header)
            guard let request = machine.request, let layer = machine.nextLayer, layer < request.identity.layers,
                region != nil || rdma != nil
            else {
                return machine.receiveLayerReady(ready, computedCRC32C: 0)
            }
            if let rdma {
                watchdog.pause()
                defer { watchdog.touch() }
                try await rdma.waitForLayer(layer, timeout: settings.idleTimeout)
            }
            let source = layerBytes(layer, request)
            // With a landing zone, copy and checksum in one pass; what is verified is then exactly what
            // landed, even if the sender wrote to the shared region again meanwhile.
            if let zone = inbound?.landingZone(forLayer: layer), zone.byteCount == source.count {
                var writer = LayerWriter(regions: zone.regions)
                var crc = CRC32C()
                writer.write(source, at: 0, checksumming: &crc)
                landed = true
                return machine.receiveLayerReady(ready, computedCRC32C: crc.value)
            }
            landed = false
            return machine.receiveLayerReady(ready, computedCRC32C: CRC32C.checksum(source))
        case .frame(.completion, let header, let payloadLength):
            // The logits follow as the frame's payload; the machine sees the completion once they are all here.
            var payload: [UInt8] = []
            payload.reserveCapacity(payloadLength)
            completion = (try KVFrame.decode(Baton_V1_TransferCompletion.self, from: header), payload)
            return .none
        case .frame(.error, let header, _):
            return machine.receivePeerError(try KVFrame.decode(Baton_V1_TransferError.self, from: header))
        case .frame(let kind, _, _):
            return machine.abort(.protocolViolation, "unexpected \(kind) frame from the sender")
        }
    }

    /// Chooses where `layer`'s chunks go: the receiver's landing zone when it offers one (no staging
    /// copy), else the staging buffer.
    private func prepareDestination(layer: Int, _ request: KVTransferRequest) -> KVReceiverStateMachine.Action {
        if let zone = inbound?.landingZone(forLayer: layer) {
            guard zone.byteCount == request.layerByteCount else {
                return machine.abort(.cancelled, "the decode side offered \(zone.byteCount) bytes for layer \(layer) of \(request.layerByteCount)")
            }
            destination = LayerWriter(regions: zone.regions)
            landed = true
        } else {
            if staging == nil { staging = .allocate(byteCount: request.layerByteCount, alignment: 64) }
            destination = LayerWriter(regions: [staging!])
            landed = false
        }
        return .none
    }

    /// Writes chunk bytes to the layer's destination while checksumming them. The layer is delivered only
    /// after every chunk's checksum matched (corrupt bytes never reach a decode step: a landing zone is
    /// not read before `layerLanded`, and is discarded on failure).
    private func store(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        destination.write(bytes, at: chunkWriteOffset, checksumming: &chunkCRC)
        chunkWriteOffset += bytes.count
    }

    private func perform(_ action: KVReceiverStateMachine.Action) async {
        switch action {
        case .none:
            return
        case .accept(let request, let transport):
            await accept(request, transport)
        case .deliverLayer(let layer):
            guard let inbound, let request = machine.request else { return }
            watchdog.pause()
            defer { watchdog.touch() }
            do {
                if landed {
                    try await inbound.layerLanded(layer)
                } else {
                    try await inbound.receiveLayer(layer, bytes: layerBytes(layer, request))
                }
                bytesReceived += request.layerByteCount
            } catch {
                await perform(machine.abort(.cancelled, "the decode side rejected layer \(layer): \(error)"))
            }
        case .complete(let completion):
            guard let inbound, let request = machine.request else { return }
            watchdog.pause()
            do {
                try await inbound.complete(completion)
            } catch {
                // Completion is final in the machine; report this local failure like any other.
                let failure = KVTransportError(.cancelled, "the decode side could not finish request \(request.requestID): \(error)")
                lateFailure = failure
                await sendError(failure)
                await inbound.fail(failure)
                self.inbound = nil
                return
            }
            var result = Baton_V1_TransferResult()
            result.requestID = request.requestID
            result.bytesReceived = UInt64(bytesReceived)
            var buffer = io.allocator.buffer(capacity: 64)
            if (try? KVFrame.write(.result, result, into: &buffer)) != nil {
                try? await io.write(buffer, endStream: true)
            }
            self.inbound = nil
            logger.debug("KV transfer \(request.requestID) received: \(bytesReceived) bytes")
        case .fail(let code, let message, let notifyPeer):
            let error = KVTransportError(code, message)
            logger.warning("KV transfer \(machine.request?.requestID ?? "?") failed: \(error)")
            if notifyPeer { await sendError(error) }
            if let inbound {
                self.inbound = nil
                await inbound.fail(error)
            }
        }
    }

    private func accept(_ request: KVTransferRequest, _ chosen: KVTransportKind) async {
        watchdog.pause()
        defer { watchdog.touch() }
        var transport = chosen
        if transport == .rdma {
            // Before the decode side is told the transport: a device that refuses means TLS after all.
            do throws(KVTransportError) {
                guard let senderEndpoint else {
                    throw KVTransportError(.protocolViolation, "RDMA chosen but the sender's handshake has no queue pair")
                }
                let peer = try RDMAEndpoint(proto: senderEndpoint)
                do throws(KVTransportError) {
                    rdma = try RDMAReceiveEndpoint(
                        settings: settings.rdma, peer: peer, layers: request.identity.layers,
                        layerBytes: request.layerByteCount)
                } catch {
                    guard case .accept(_, let fallback) = machine.rdmaUnavailable() else { throw error }
                    logger.warning("RDMA unavailable for request \(request.requestID), using the \(fallback == .tlsHTTP2 ? "TLS" : "plaintext") stream: \(error)")
                    transport = fallback
                }
            } catch {
                await perform(machine.abort(error.code, error.message))
                return
            }
        }
        do {
            var offered = request
            offered.sender = io.peer.name
            inbound = try await receiver.beginTransfer(offered, transport: transport)
        } catch {
            await perform(machine.abort(.refused, "the decode side refused request \(request.requestID): \(error)"))
            return
        }
        var accept = Baton_V1_HandshakeAccept()
        accept.requestID = request.requestID
        accept.transport = transport.proto
        do throws(KVTransportError) {
            switch transport {
            case .sharedMemory:
                let region = try SharedMemoryRegionCache.receiving.lease(byteCount: request.totalByteCount)
                self.region = region
                accept.sharedMemoryName = region.name
            case .tlsHTTP2, .plaintextHTTP2:
                break  // each layer's destination is chosen at its first chunk
            case .rdma:
                accept.rdmaEndpoint = rdma!.local.proto
            }
            var buffer = io.allocator.buffer(capacity: 128)
            try KVFrame.write(.accept, accept, into: &buffer)
            do { try await io.write(buffer, endStream: false) } catch {
                throw KVTransportError(.connectionFailed, "could not answer the handshake", cause: error)
            }
        } catch {
            await perform(machine.abort(error.code, error.message))
        }
    }

    /// The verified bytes of `layer`: in the staging buffer (HTTP/2), the shared-memory region or the
    /// RDMA buffer, all owned by this session until it ends.
    private func layerBytes(_ layer: Int, _ request: KVTransferRequest) -> UnsafeRawBufferPointer {
        if let region { return region.unsafeBytes(offset: layer * request.layerByteCount, count: request.layerByteCount) }
        if let rdma { return rdma.bytes(layer: layer) }
        return UnsafeRawBufferPointer(staging!)
    }

    private func sendError(_ error: KVTransportError) async {
        var buffer = io.allocator.buffer(capacity: 128)
        guard (try? KVFrame.write(.error, error.proto(requestID: machine.request?.requestID ?? ""), into: &buffer)) != nil else { return }
        try? await io.write(buffer, endStream: true)
    }
}

/// Sequential writes into a layer's regions (taken in order as one address range). Writes arrive in
/// order of offset, so a cursor finds the region without searching.
private struct LayerWriter {
    private var regions: [UnsafeMutableRawBufferPointer] = []
    private var index = 0
    /// Layer offset where `regions[index]` starts.
    private var regionStart = 0
    private(set) var byteCount = 0

    init() {}

    init(regions: [UnsafeMutableRawBufferPointer]) {
        self.regions = regions
        byteCount = regions.reduce(0) { $0 + $1.count }
    }

    /// Copies `bytes` to layer offsets `offset..<offset + bytes.count` (within `byteCount`), adding them
    /// to `crc` in the same pass.
    mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, checksumming crc: inout CRC32C) {
        precondition(offset >= 0 && offset + bytes.count <= byteCount, "layer write out of bounds")
        if offset < regionStart {
            index = 0
            regionStart = 0
        }
        var offset = offset
        var source = bytes
        while !source.isEmpty {
            while offset >= regionStart + regions[index].count {
                regionStart += regions[index].count
                index += 1
            }
            let region = regions[index]
            let within = offset - regionStart
            let take = min(source.count, region.count - within)
            crc.updateCopying(
                UnsafeRawBufferPointer(rebasing: source[0..<take]),
                to: UnsafeMutableRawBufferPointer(rebasing: region[within..<within + take]))
            source = UnsafeRawBufferPointer(rebasing: source[take...])
            offset += take
        }
    }
}
