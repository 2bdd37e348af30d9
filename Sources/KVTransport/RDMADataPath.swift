#if canImport(Glibc)
import Glibc
#endif

/// Where RDMA transfers open their device.
public struct RDMASettings: Sendable, Equatable {
    /// The verbs library to load (default `defaultLibrary`).
    public var library: String
    /// Device name (nil = the first one found).
    public var device: String?
    public var port: UInt8
    /// GID index for RoCE (0 or 1, see `ibv_devinfo -v`); -1 for InfiniBand LID routing.
    public var gidIndex: Int32

    public init(library: String = RDMASettings.defaultLibrary, device: String? = nil, port: UInt8 = 1, gidIndex: Int32 = 0) {
        self.library = library
        self.device = device
        self.port = port
        self.gidIndex = gidIndex
    }

    /// The system's verbs library, loaded unless `libraryVariable` names another.
    public static let standardLibrary = "libibverbs.so.1"
    /// The environment variable naming a verbs library to load instead of `standardLibrary`: for tests, Baton's
    /// emulated provider (`libBatonFakeVerbs.so`, built with the tests; see Deploy/docs/rdma.md).
    public static let libraryVariable = "BATON_IBVERBS_LIBRARY"

    /// `libraryVariable`'s value when set and not empty, else `standardLibrary`.
    public static var defaultLibrary: String {
        guard let value = getenv(libraryVariable).map({ String(cString: $0) }), !value.isEmpty else { return standardLibrary }
        return value
    }
}

/// The decode side of an RDMA transfer: a buffer for the whole sequence registered for remote write, a
/// queue pair connected to the sender, and one posted receive per layer (each consumed by the sender's
/// WRITE-with-immediate of that layer). Release with `close()` (deregisters before freeing).
final class RDMAReceiveEndpoint {
    private let context: RDMAContext
    private var region: RDMAMemoryRegion?
    private let buffer: UnsafeMutableRawBufferPointer
    private let layerBytes: Int
    /// Layers whose WRITE has landed (0..<layersLanded), counted from their immediates.
    private var layersLanded = 0
    /// This end's queue pair and buffer, for the `HandshakeAccept`.
    let local: RDMAEndpoint

    init(settings: RDMASettings, peer: RDMAEndpoint, layers: Int, layerBytes: Int) throws(KVTransportError) {
        let context = try RDMAContext(
            library: settings.library, device: settings.device, port: settings.port, gidIndex: settings.gidIndex)
        let byteCount = layers * layerBytes
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: 4096)
        do {
            let region = try context.register(buffer.baseAddress!, length: byteCount, allowRemoteWrite: true)
            var local = try context.createQueuePair(maxSend: 16, maxReceive: Int32(layers + 1))
            for layer in 0..<layers { try context.postReceive(id: UInt64(layer)) }
            try context.connect(to: peer)
            local.remoteAddress = region.remoteAddress
            local.remoteKey = region.remoteKey
            local.length = UInt64(byteCount)
            self.region = region
            self.local = local
        } catch {
            buffer.deallocate()
            throw error
        }
        self.context = context
        self.buffer = buffer
        self.layerBytes = layerBytes
    }

    /// Polls until the WRITE of `layer` has landed (its immediate arrived), yielding between polls. Layers
    /// land in order (a reliable connection keeps it); one poll may also bring the next layers' immediates,
    /// as the sender WRITEs layer n + 1 as soon as it has sent `LayerReady` for n: they are counted, not lost.
    func waitForLayer(_ layer: Int, timeout: Duration) async throws(KVTransportError) {
        let deadline = ContinuousClock.now + timeout
        while layersLanded <= layer {
            for completion in try context.poll() {
                guard let immediate = completion.immediate else { continue }
                guard Int(immediate) == layersLanded else {
                    throw KVTransportError(.protocolViolation, "RDMA immediate for layer \(immediate) where layer \(layersLanded) was due")
                }
                layersLanded += 1
            }
            if layersLanded > layer { return }
            if ContinuousClock.now > deadline {
                throw KVTransportError(.timeout, "RDMA WRITE of layer \(layer) did not arrive within the timeout")
            }
            await Task.yield()
        }
    }

    /// Layer `layer` in the registered buffer; valid until `close()`.
    func bytes(layer: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[(layer * layerBytes)..<((layer + 1) * layerBytes)])
    }

    func close() {
        guard region != nil else { return }
        region = nil
        buffer.deallocate()
    }

    deinit { close() }
}

/// The prefill side of an RDMA transfer: a registered staging buffer for one layer and a queue pair,
/// created before the handshake (its endpoint goes in the handshake) and connected once accepted.
final class RDMASendEndpoint {
    private let context: RDMAContext
    private var region: RDMAMemoryRegion?
    private let staging: UnsafeMutableRawBufferPointer
    private var remote: RDMAEndpoint?
    let local: RDMAEndpoint

    init(settings: RDMASettings, layerBytes: Int) throws(KVTransportError) {
        let context = try RDMAContext(
            library: settings.library, device: settings.device, port: settings.port, gidIndex: settings.gidIndex)
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: layerBytes, alignment: 4096)
        do {
            region = try context.register(staging.baseAddress!, length: layerBytes, allowRemoteWrite: false)
            local = try context.createQueuePair(maxSend: 16, maxReceive: 1)
        } catch {
            staging.deallocate()
            throw error
        }
        self.context = context
        self.staging = staging
    }

    func connect(to remote: RDMAEndpoint) throws(KVTransportError) {
        try context.connect(to: remote)
        self.remote = remote
    }

    /// WRITEs `bytes` as layer `layer` (immediate = layer) and waits for its completion.
    func write(layer: Int, bytes: UnsafeRawBufferPointer, timeout: Duration) async throws(KVTransportError) {
        guard let region, let remote, bytes.count <= staging.count else {
            throw KVTransportError(.invalidArgument, "RDMA WRITE before the queue pair was connected")
        }
        UnsafeMutableRawBufferPointer(rebasing: staging[0..<bytes.count]).copyMemory(from: bytes)
        try context.write(
            id: UInt64(layer), from: region, offset: 0, length: bytes.count, to: remote,
            remoteOffset: layer * bytes.count, immediate: UInt32(layer))
        let deadline = ContinuousClock.now + timeout
        while true {
            if try context.poll().contains(where: { $0.id == UInt64(layer) }) { return }
            if ContinuousClock.now > deadline {
                throw KVTransportError(.timeout, "RDMA WRITE of layer \(layer) did not complete within the timeout")
            }
            await Task.yield()
        }
    }

    func close() {
        guard region != nil else { return }
        region = nil
        staging.deallocate()
    }

    deinit { close() }
}
