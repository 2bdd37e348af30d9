import RPC
import ClusterProtocol
import Logging
import NIOCore

/// Runs one transfer's sending side over a `KVStreamIO`: the I/O half of `KVSenderStateMachine`.
final class KVSenderSession {
    private let io: any KVStreamIO
    private var machine: KVSenderStateMachine
    private let capabilities: KVTransportCapabilities
    private let chunkBytes: Int
    private let faults: KVTransferFaults
    private let watchdog: Watchdog
    private let logger: Logger
    private var decoder = KVFrameDecoder(maximumPayloadLength: 0)
    private var input = ByteBuffer()
    private var region: SharedMemoryRegion?
    private let rdmaSettings: RDMASettings?
    private var rdma: RDMASendEndpoint?
    private let idleTimeout: Duration
    private var peerEnded = false
    /// Chunk frames are built in these buffers in turn. Once a chunk has gone out, its buffer is ours
    /// alone again and `clear()` keeps the storage; one still queued gets fresh storage (copy-on-write).
    /// Saves an allocation and the page faults of a fresh megabyte per chunk.
    private var chunkBuffers: [ByteBuffer] = []
    private var nextChunkBuffer = 0

    init(
        io: any KVStreamIO, request: KVTransferRequest, capabilities: KVTransportCapabilities, chunkBytes: Int,
        idleTimeout: Duration, faults: KVTransferFaults, logger: Logger, rdma: RDMASettings? = nil
    ) {
        self.io = io
        self.rdmaSettings = rdma
        self.idleTimeout = idleTimeout
        self.machine = KVSenderStateMachine(request: request)
        self.capabilities = capabilities
        self.chunkBytes = chunkBytes
        self.faults = faults
        self.watchdog = Watchdog(timeout: idleTimeout)
        self.logger = logger
    }

    func run(produce: (KVOutboundTransfer) async throws -> KVTransferCompletion) async throws(KVTransportError) -> KVTransferReport {
        let started = ContinuousClock.now
        let watch = watchdog.start(onFire: io.abort)
        defer {
            watch.cancel()
            if let region { SharedMemoryRegionCache.sending.giveBack(region) }
            rdma?.close()
        }
        guard case .sendHandshake(let request) = machine.start() else { throw machine.failure! }
        var handshake = request.handshakeProto
        handshake.maxChunkBytes = UInt32(chunkBytes)
        handshake.capabilities = capabilities.proto
        if capabilities.rdma, let rdmaSettings {
            do throws(KVTransportError) {
                let endpoint = try RDMASendEndpoint(settings: rdmaSettings, layerBytes: request.layerByteCount)
                rdma = endpoint
                handshake.capabilities.rdmaEndpoint = endpoint.local.proto
            } catch {
                logger.warning("RDMA unavailable for request \(request.requestID), using the TLS stream: \(error)")
                handshake.capabilities.rdma = false
            }
        } else {
            handshake.capabilities.rdma = false
        }
        try await write(.handshake, handshake, endStream: false)

        let accept = try await readFrame(waitingFor: "the receiver's answer to the handshake")
        guard case .accept(let message) = accept else { throw unexpected(accept) }
        let transport: KVTransportKind
        switch machine.receiveAccept(message) {
        case .beginTransfer(let kind, let name):
            transport = kind
            if kind == .sharedMemory {
                do throws(KVTransportError) { region = try SharedMemoryRegionCache.sending.open(name: name, byteCount: request.totalByteCount) } catch {
                    throw await failAndNotify(machine.abort(error.code, error.message))
                }
            } else if kind == .rdma {
                do throws(KVTransportError) {
                    guard let rdma, message.hasRdmaEndpoint else {
                        throw KVTransportError(.protocolViolation, "RDMA chosen without queue pairs on both ends")
                    }
                    try rdma.connect(to: try RDMAEndpoint(proto: message.rdmaEndpoint))
                } catch {
                    throw await failAndNotify(machine.abort(error.code, error.message))
                }
            } else {
                rdma?.close()
                rdma = nil
            }
        case let action: throw await failAndNotify(action)
        }
        watchdog.touch()

        let outbound = KVOutboundTransfer(transport: transport) { [self] (layer, bytes) throws(KVTransportError) in
            try await sendLayer(layer, bytes)
        }
        let completion: KVTransferCompletion
        do {
            completion = try await produce(outbound)
        } catch let error as KVTransportError {
            if machine.isFinished { throw machine.failure ?? error }
            throw await failAndNotify(machine.abort(error.code, error.message))
        } catch {
            throw await failAndNotify(machine.abort(.cancelled, "the producer gave up: \(error)"))
        }
        switch machine.finish(completion) {
        case .sendCompletion(let completion):
            var buffer = io.allocator.buffer(capacity: 128 + completion.logits.count * MemoryLayout<Float>.size)
            let header = completion.proto(requestID: request.requestID)
            do {
                try completion.logits.withUnsafeBytes { try KVFrame.write(.completion, header, payload: $0, into: &buffer) }
            } catch {
                throw (error as? KVTransportError) ?? KVTransportError(.invalidArgument, "could not encode the completion", cause: error)
            }
            try await writeBuffer(buffer, endStream: true)
        case let action: throw await failAndNotify(action)
        }
        let answer = try await readFrame(waitingFor: "the receiver's confirmation")
        guard case .result(let result) = answer else { throw unexpected(answer) }
        switch machine.receiveResult(result) {
        case .finished(let bytes):
            return KVTransferReport(
                requestID: request.requestID, transport: transport, bytes: bytes,
                seconds: (ContinuousClock.now - started) / .seconds(1))
        case let action: throw await failAndNotify(action)
        }
    }

    private func sendLayer(_ layer: Int, _ bytes: KVLayerBytes) async throws(KVTransportError) {
        switch machine.sendLayer(layer, byteCount: bytes.count) {
        case .sendLayer: break
        case let action: throw await failAndNotify(action)
        }
        if let rdma {
            // The verbs write is asynchronous: an array's bytes are copied to memory that outlives it.
            let flip = faults.flipBit.flatMap { $0.layer == layer && $0.byteOffset < bytes.count ? $0.byteOffset : nil }
            let held: UnsafeMutableRawBufferPointer?
            let source: UnsafeRawBufferPointer
            switch bytes {
            case .pointer(let raw) where flip == nil:
                held = nil
                source = raw
            default:
                let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
                var unused = CRC32C()
                bytes.copy(0..<bytes.count, to: copy, checksumming: &unused)
                held = copy
                source = UnsafeRawBufferPointer(copy)
            }
            defer { held?.deallocate() }
            let crc = CRC32C.checksum(source)
            if let flip, let held { held[flip] ^= 0x01 }  // after the checksum: the receiver must catch it
            do throws(KVTransportError) {
                try await rdma.write(layer: layer, bytes: source, timeout: idleTimeout)
            } catch {
                throw await failAfterWriteError(error)
            }
            var ready = Baton_V1_LayerReady()
            ready.requestID = machine.request.requestID
            ready.layer = UInt32(layer)
            ready.crc32C = crc
            try await write(.layerReady, ready, endStream: false)
        } else if let region {
            let crc = region.withBytes(offset: layer * bytes.count, count: bytes.count) { destination in
                var crc = CRC32C()
                bytes.copy(0..<bytes.count, to: destination, checksumming: &crc)
                if let flip = faults.flipBit, flip.layer == layer, flip.byteOffset < bytes.count {
                    destination[flip.byteOffset] ^= 0x01
                }
                return crc.value
            }
            var ready = Baton_V1_LayerReady()
            ready.requestID = machine.request.requestID
            ready.layer = UInt32(layer)
            ready.crc32C = crc
            try await write(.layerReady, ready, endStream: false)
        } else {
            var offset = 0
            var batch: [ByteBuffer] = []
            while offset < bytes.count {
                let length = min(chunkBytes, bytes.count - offset)
                var chunk = Baton_V1_KVChunk()
                chunk.requestID = machine.request.requestID
                chunk.layer = UInt32(layer)
                chunk.offset = UInt64(offset)
                chunk.length = UInt32(length)
                let slot = nextChunkBuffer
                var buffer = takeChunkBuffer(slot, capacity: length + 64)
                try KVFrame.writeChunk(&chunk, payloadLength: length, into: &buffer) { destination, crc in
                    bytes.copy(offset..<offset + length, to: destination, checksumming: &crc)
                }
                if let flip = faults.flipBit, flip.layer == layer, flip.byteOffset >= offset, flip.byteOffset < offset + length {
                    let index = buffer.writerIndex - length + (flip.byteOffset - offset)
                    buffer.setInteger(buffer.getInteger(at: index, as: UInt8.self)! ^ 0x01, at: index)
                }
                chunkBuffers[slot] = buffer  // shared with the channel until it has gone out
                offset += length
                batch.append(buffer)
                // Several chunks per flush: the receiver's HTTP/2 parser copies a read that starts at a
                // flush boundary, so fewer boundaries mean fewer copies.
                if batch.count == Self.chunksPerFlush || offset == bytes.count {
                    try await writeBuffers(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
        }
        watchdog.touch()
        if faults.truncateAfterLayer == layer {
            logger.warning("fault injection: cutting the stream after layer \(layer)")
            io.abort()
            throw await failAndNotify(machine.abort(.cancelled, "fault injection cut the stream after layer \(layer)"), notify: false)
        }
        if faults.stallAfterLayer == layer {
            logger.warning("fault injection: going silent after layer \(layer)")
            watchdog.pause()
            let answer = try await readFrame(waitingFor: "nothing (stalled on purpose)")
            throw unexpected(answer)
        }
    }

    /// Takes buffer `slot` of the rotation out, cleared, with room for `capacity` bytes; the caller puts
    /// it back once written (eight buffers: more than the chunks the stream's send buffer holds).
    private func takeChunkBuffer(_ slot: Int, capacity: Int) -> ByteBuffer {
        if chunkBuffers.isEmpty { chunkBuffers = Array(repeating: ByteBuffer(), count: 8) }
        nextChunkBuffer = (slot + 1) % chunkBuffers.count
        var buffer = chunkBuffers[slot]
        chunkBuffers[slot] = ByteBuffer()  // our only other reference: without it the buffer may be unique
        if buffer.capacity == 0 { return io.allocator.buffer(capacity: capacity) }
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    private enum Inbound {
        case accept(Baton_V1_HandshakeAccept)
        case result(Baton_V1_TransferResult)
    }

    /// Reads the receiver's next frame; a `TransferError`, the end of the stream or a timeout fail the
    /// transfer and throw.
    private func readFrame(waitingFor what: String) async throws(KVTransportError) -> Inbound {
        while true {
            do throws(KVTransportError) {
                if let event = try decoder.next(&input) {
                    guard case .frame(let kind, let header, _) = event else { continue }
                    switch kind {
                    case .accept: return .accept(try KVFrame.decode(Baton_V1_HandshakeAccept.self, from: header))
                    case .result: return .result(try KVFrame.decode(Baton_V1_TransferResult.self, from: header))
                    case .error:
                        let error = try KVFrame.decode(Baton_V1_TransferError.self, from: header)
                        throw await failAndNotify(machine.receivePeerError(error))
                    default:
                        throw await failAndNotify(machine.abort(.protocolViolation, "unexpected \(kind) frame from the receiver"))
                    }
                }
            } catch {
                if machine.isFinished { throw error }
                throw await failAndNotify(machine.abort(error.code, error.message))
            }
            let next: ByteBuffer?
            do { next = peerEnded ? nil : try await io.read() } catch {
                next = nil
            }
            guard let next else {
                peerEnded = true
                if watchdog.fired { throw await failAndNotify(machine.timedOut(after: watchdog.seconds, waitingFor: what), notify: false) }
                throw await failAndNotify(machine.streamEnded())
            }
            watchdog.touch()
            input = next
        }
    }

    private func write(_ kind: KVFrame.Kind, _ message: some SwiftProtobufMessage, endStream: Bool) async throws(KVTransportError) {
        var buffer = io.allocator.buffer(capacity: 128)
        try KVFrame.write(kind, message, into: &buffer)
        try await writeBuffer(buffer, endStream: endStream)
    }

    /// Chunks sent per flush, at most (within the eight rotating buffers, at most the send buffer).
    static let chunksPerFlush = 4

    private func writeBuffers(_ buffers: [ByteBuffer]) async throws(KVTransportError) {
        do {
            try await io.write(contentsOf: buffers)
        } catch {
            if watchdog.fired { throw await failAndNotify(machine.timedOut(after: watchdog.seconds, waitingFor: "room to send"), notify: false) }
            let answer = try await readFrame(waitingFor: "the receiver's reason for closing")
            throw unexpected(answer)
        }
    }

    private func writeBuffer(_ buffer: ByteBuffer, endStream: Bool) async throws(KVTransportError) {
        do {
            try await io.write(buffer, endStream: endStream)
        } catch {
            // The receiver may have said why before it closed: prefer its reason.
            if watchdog.fired { throw await failAndNotify(machine.timedOut(after: watchdog.seconds, waitingFor: "room to send"), notify: false) }
            let answer = try await readFrame(waitingFor: "the receiver's reason for closing")
            throw unexpected(answer)
        }
    }

    private func unexpected(_ frame: Inbound) -> KVTransportError {
        let action: KVSenderStateMachine.Action
        switch frame {
        case .accept: action = machine.abort(.protocolViolation, "unexpected second accept frame")
        case .result: action = machine.abort(.protocolViolation, "unexpected result frame before the completion")
        }
        if case .fail(let code, let message, _) = action { return KVTransportError(code, message) }
        return machine.failure ?? KVTransportError(.protocolViolation, "unexpected frame")
    }

    /// An RDMA WRITE failed. The receiver may have given up first (a bad checksum, a rejected layer) and
    /// released its queue pair and buffer as it ended, which is what failed the WRITE: its reason is then
    /// already on the stream and is the one to report. So: tell it ours, which ends a receiver still
    /// waiting, then read until its stream ends for a reason it sent (bounded by the watchdog).
    private func failAfterWriteError(_ error: KVTransportError) async -> KVTransportError {
        var buffer = io.allocator.buffer(capacity: 128)
        if !peerEnded, (try? KVFrame.write(.error, error.proto(requestID: machine.request.requestID), into: &buffer)) != nil {
            try? await io.write(buffer, endStream: true)
        }
        while !peerEnded {
            while let event = try? decoder.next(&input) {
                guard case .frame(.error, let header, _) = event,
                    let reason = try? KVFrame.decode(Baton_V1_TransferError.self, from: header)
                else { continue }
                return await failAndNotify(machine.receivePeerError(reason))
            }
            let next = try? await io.read()
            guard let next else {
                peerEnded = true
                break
            }
            input = next
        }
        return await failAndNotify(machine.abort(error.code, error.message), notify: false)
    }

    /// Performs a failing action: tells the receiver (best effort) and returns the error to throw.
    private func failAndNotify(_ action: KVSenderStateMachine.Action, notify: Bool = true) async -> KVTransportError {
        guard case .fail(let code, let message, let notifyPeer) = action else {
            return machine.failure ?? KVTransportError(.protocolViolation, "transfer failed")
        }
        let error = KVTransportError(code, message)
        if notify && notifyPeer && !peerEnded {
            var buffer = io.allocator.buffer(capacity: 128)
            if (try? KVFrame.write(.error, error.proto(requestID: machine.request.requestID), into: &buffer)) != nil {
                try? await io.write(buffer, endStream: true)
            }
        }
        logger.debug("KV transfer \(machine.request.requestID) failed: \(error)")
        return error
    }
}
