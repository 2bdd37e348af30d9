import CIBVerbs
import ClusterProtocol
import Logging

/// What this machine offers for RDMA, found once at start-up through the verbs library (libibverbs,
/// loaded with dlopen, so a machine without it still runs). Without a device the transport falls back to
/// TLS HTTP/2.
public struct RDMADiscovery: Sendable, Equatable {
    /// The verbs library asked (`RDMASettings.library`).
    public var library: String
    /// Names of the RDMA devices found (e.g. "mlx5_0", "rxe0").
    public var devices: [String]
    /// Why RDMA is unusable, when `devices` is empty.
    public var unavailableReason: String?
    /// The library's self-description when it is Baton's emulated test provider, not libibverbs.
    public var emulated: String?

    public var isAvailable: Bool { !devices.isEmpty }

    /// Lists the devices `library` offers; never throws: a missing library or kernel support is an
    /// `unavailableReason`.
    public static func discover(library: String = RDMASettings.defaultLibrary) -> RDMADiscovery {
        var discovery = RDMADiscovery(library: library, devices: [], unavailableReason: nil, emulated: nil)
        var error = [CChar](repeating: 0, count: 256)
        guard let provider = cib_load(library, &error, error.count) else {
            discovery.unavailableReason = cString(error)
            return discovery
        }
        discovery.emulated = cib_provider_emulated(provider).map { String(cString: $0) }
        var count: Int32 = 0
        let maxNames = 16
        var names = [CChar](repeating: 0, count: 64 * maxNames)
        guard cib_list_devices(provider, &count, &names, Int32(maxNames), &error, error.count) == 0 else {
            discovery.unavailableReason = cString(error)
            return discovery
        }
        guard count > 0 else {
            discovery.unavailableReason = "ibv_get_device_list: no RDMA device"
            return discovery
        }
        discovery.devices = (0..<min(Int(count), maxNames)).map { index in
            cString(Array(names[(index * 64)..<(index * 64 + 64)]))
        }
        return discovery
    }

    /// The one start-up log line.
    public var summary: String {
        let source = library == RDMASettings.standardLibrary ? "" : " from \(library)"
        if let emulated {
            let found = isAvailable ? "devices \(devices.joined(separator: ", ")); KV transfers may use RDMA WRITE" :
                "unavailable (\(unavailableReason ?? "unknown reason")); KV transfers use TLS HTTP/2"
            return "RDMA EMULATED\(source): \(emulated); \(found)"
        }
        if isAvailable { return "RDMA\(source): devices \(devices.joined(separator: ", ")); KV transfers may use RDMA WRITE" }
        return "RDMA unavailable\(source) (\(unavailableReason ?? "unknown reason")); KV transfers use TLS HTTP/2"
    }

    /// Discovers and logs the result in one line (a warning when the provider is emulated: never in production).
    public static func discover(library: String = RDMASettings.defaultLibrary, logger: Logger) -> RDMADiscovery {
        let discovery = discover(library: library)
        if discovery.emulated != nil {
            logger.warning("\(discovery.summary)")
        } else {
            logger.info("\(discovery.summary)")
        }
        return discovery
    }
}

extension KVTransportConfiguration {
    /// Finds the RDMA devices of `rdma.library`, logs the start-up line and sets `rdmaAvailable`.
    @discardableResult
    public mutating func discoverRDMA(logger: Logger) -> RDMADiscovery {
        let discovery = RDMADiscovery.discover(library: rdma.library, logger: logger)
        rdmaAvailable = discovery.isAvailable
        return discovery
    }
}

/// One end of an RDMA reliable-connected queue pair, as exchanged over the TLS control stream. The
/// receiver's also names its registered buffer (address, rkey, length) for one-sided WRITEs.
public struct RDMAEndpoint: Sendable, Equatable {
    public var queuePairNumber: UInt32
    public var packetSequenceNumber: UInt32
    /// 16 bytes.
    public var gid: [UInt8]
    public var lid: UInt16
    public var port: UInt8
    /// `enum ibv_mtu` value (1 = 256 … 5 = 4096).
    public var mtu: UInt32
    public var remoteAddress: UInt64
    public var remoteKey: UInt32
    public var length: UInt64

    public init(
        queuePairNumber: UInt32, packetSequenceNumber: UInt32, gid: [UInt8], lid: UInt16, port: UInt8, mtu: UInt32,
        remoteAddress: UInt64 = 0, remoteKey: UInt32 = 0, length: UInt64 = 0
    ) {
        self.queuePairNumber = queuePairNumber
        self.packetSequenceNumber = packetSequenceNumber
        self.gid = gid
        self.lid = lid
        self.port = port
        self.mtu = mtu
        self.remoteAddress = remoteAddress
        self.remoteKey = remoteKey
        self.length = length
    }

    public var proto: Baton_V1_RDMAEndpoint {
        var message = Baton_V1_RDMAEndpoint()
        message.queuePairNumber = queuePairNumber
        message.packetSequenceNumber = packetSequenceNumber
        message.gid = .init(gid)
        message.lid = UInt32(lid)
        message.port = UInt32(port)
        message.mtu = mtu
        message.remoteAddress = remoteAddress
        message.remoteKey = remoteKey
        message.length = length
        return message
    }

    /// Checks a peer's endpoint: a 16-byte GID, a 24-bit PSN, a known MTU, in-range LID and port.
    public init(proto message: Baton_V1_RDMAEndpoint) throws(KVTransportError) {
        guard message.gid.count == 16 else {
            throw KVTransportError(.protocolViolation, "RDMA endpoint with a \(message.gid.count)-byte GID (expected 16)")
        }
        guard message.packetSequenceNumber <= 0xFF_FFFF, (1...5).contains(message.mtu), message.lid <= 0xFFFF,
            (1...255).contains(message.port), message.queuePairNumber <= 0xFF_FFFF
        else {
            throw KVTransportError(
                .protocolViolation,
                "RDMA endpoint out of range (QPN \(message.queuePairNumber), PSN \(message.packetSequenceNumber), MTU \(message.mtu), LID \(message.lid), port \(message.port))")
        }
        self.init(
            queuePairNumber: message.queuePairNumber, packetSequenceNumber: message.packetSequenceNumber,
            gid: Array(message.gid), lid: UInt16(message.lid), port: UInt8(message.port), mtu: message.mtu,
            remoteAddress: message.remoteAddress, remoteKey: message.remoteKey, length: message.length)
    }

    init(_ endpoint: cib_endpoint) {
        var e = endpoint
        let gid = withUnsafeBytes(of: &e.gid) { Array($0) }
        self.init(
            queuePairNumber: endpoint.qp_number, packetSequenceNumber: endpoint.psn, gid: gid, lid: endpoint.lid,
            port: endpoint.port, mtu: endpoint.mtu)
    }

    var cEndpoint: cib_endpoint {
        var e = cib_endpoint()
        e.qp_number = queuePairNumber
        e.psn = packetSequenceNumber
        withUnsafeMutableBytes(of: &e.gid) { destination in
            for (index, byte) in gid.prefix(16).enumerated() { destination[index] = byte }
        }
        e.lid = lid
        e.port = port
        e.mtu = mtu
        return e
    }
}

/// An opened RDMA device with its protection domain, completion queue and (once created) one RC queue
/// pair. The data path of an RDMA transfer: the receiver registers its buffer and posts one receive per
/// layer; the sender WRITEs each layer into it with the layer index as immediate value; both poll the
/// completion queue. Every verbs failure becomes a `KVTransportError` with code `.rdma` naming the call.
///
/// Not thread-safe: one owner. Registered memory must outlive its `RDMAMemoryRegion`.
public final class RDMAContext {
    private let context: OpaquePointer

    /// Opens `device` (nil = the first one) of the verbs `library` on `port`, with GID index `gidIndex`
    /// (RoCE needs one; -1 for InfiniBand LID routing).
    public init(
        library: String = RDMASettings.defaultLibrary, device: String? = nil, port: UInt8 = 1, gidIndex: Int32 = 0,
        completionQueueEntries: Int32 = 256
    ) throws(KVTransportError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let provider = cib_load(library, &error, error.count) else { throw KVTransportError(.rdma, cString(error)) }
        let opened: OpaquePointer? =
            if let device { cib_open(provider, device, port, gidIndex, completionQueueEntries, &error, error.count) } else {
                cib_open(provider, nil, port, gidIndex, completionQueueEntries, &error, error.count)
            }
        guard let opened else { throw KVTransportError(.rdma, cString(error)) }
        context = opened
    }

    deinit { cib_close(context) }

    /// Registers `[address, address + length)`; with `allowRemoteWrite` the peer may WRITE into it.
    public func register(_ address: UnsafeMutableRawPointer, length: Int, allowRemoteWrite: Bool) throws(KVTransportError) -> RDMAMemoryRegion {
        var error = [CChar](repeating: 0, count: 256)
        guard let region = cib_register(context, address, length, allowRemoteWrite ? 1 : 0, &error, error.count) else {
            throw KVTransportError(.rdma, cString(error))
        }
        return RDMAMemoryRegion(region: region, address: address, length: length)
    }

    /// Creates the queue pair and returns the local endpoint to send to the peer.
    public func createQueuePair(maxSend: Int32 = 128, maxReceive: Int32 = 128) throws(KVTransportError) -> RDMAEndpoint {
        var error = [CChar](repeating: 0, count: 256)
        var local = cib_endpoint()
        guard cib_create_queue_pair(context, maxSend, maxReceive, &local, &error, error.count) == 0 else {
            throw KVTransportError(.rdma, cString(error))
        }
        return RDMAEndpoint(local)
    }

    /// Connects the queue pair to the peer's endpoint (RTR, then RTS).
    public func connect(to remote: RDMAEndpoint) throws(KVTransportError) {
        var error = [CChar](repeating: 0, count: 256)
        var endpoint = remote.cEndpoint
        guard cib_connect_queue_pair(context, &endpoint, &error, error.count) == 0 else {
            throw KVTransportError(.rdma, cString(error))
        }
    }

    /// Posts a zero-length receive that one incoming WRITE-with-immediate consumes.
    public func postReceive(id: UInt64) throws(KVTransportError) {
        var error = [CChar](repeating: 0, count: 256)
        guard cib_post_receive(context, id, &error, error.count) == 0 else { throw KVTransportError(.rdma, cString(error)) }
    }

    /// WRITEs `length` bytes at `offset` of `region` to the peer's `remote` buffer at `remoteOffset`, with
    /// `immediate` delivered to the peer's completion queue.
    public func write(
        id: UInt64, from region: RDMAMemoryRegion, offset: Int, length: Int, to remote: RDMAEndpoint, remoteOffset: Int,
        immediate: UInt32
    ) throws(KVTransportError) {
        guard offset >= 0, length > 0, length <= Int(UInt32.max), offset + length <= region.length,
            remoteOffset >= 0, UInt64(remoteOffset + length) <= remote.length
        else {
            throw KVTransportError(.invalidArgument, "RDMA WRITE of \(length) bytes at \(offset) → \(remoteOffset) is out of bounds")
        }
        var error = [CChar](repeating: 0, count: 256)
        guard cib_post_write_with_immediate(
            context, id, region.address + offset, UInt32(length), cib_memory_region_lkey(region.region),
            remote.remoteAddress + UInt64(remoteOffset), remote.remoteKey, immediate, &error, error.count) == 0
        else {
            throw KVTransportError(.rdma, cString(error))
        }
    }

    /// A completion, reduced to what the transport needs.
    public struct Completion: Sendable, Equatable {
        public var id: UInt64
        public var immediate: UInt32?
        public var byteCount: Int
    }

    /// Polls the completion queue once; a failed work request throws with the verbs status text.
    public func poll() throws(KVTransportError) -> [Completion] {
        var error = [CChar](repeating: 0, count: 256)
        var completions = [cib_completion](repeating: cib_completion(), count: 16)
        let count = cib_poll(context, &completions, 16, &error, error.count)
        guard count >= 0 else { throw KVTransportError(.rdma, cString(error)) }
        var result: [Completion] = []
        for var completion in completions.prefix(Int(count)) {
            guard completion.status == 0 else {
                let text = withUnsafeBytes(of: &completion.status_text) { cString(Array($0.bindMemory(to: CChar.self))) }
                throw KVTransportError(.rdma, "work request \(completion.wr_id) failed: \(text) (status \(completion.status))")
            }
            result.append(Completion(
                id: completion.wr_id, immediate: completion.has_imm != 0 ? completion.imm_data : nil,
                byteCount: Int(completion.byte_len)))
        }
        return result
    }
}

/// A registered buffer. Deregisters on deinit; the memory itself belongs to the caller.
public final class RDMAMemoryRegion {
    let region: OpaquePointer
    let address: UnsafeMutableRawPointer
    public let length: Int

    init(region: OpaquePointer, address: UnsafeMutableRawPointer, length: Int) {
        self.region = region
        self.address = address
        self.length = length
    }

    public var remoteKey: UInt32 { cib_memory_region_rkey(region) }
    public var remoteAddress: UInt64 { UInt64(UInt(bitPattern: address)) }

    deinit { cib_deregister(region) }
}

func cString(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
