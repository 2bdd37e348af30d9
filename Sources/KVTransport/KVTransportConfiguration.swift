import RPC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of the KV transport, for both the sending and the receiving side.
public struct KVTransportConfiguration: Sendable {
    /// Mutual TLS. Required unless `policy.insecure`.
    public var tls: NodeTLS?
    public var policy: KVTransportPolicy
    /// Identifies this machine (default: host name and boot id); equal ids on both ends enable shared memory.
    public var hostID: String
    /// Bytes per KV chunk on HTTP/2 (default 1 MiB less 1 KiB: a chunk and its frame header then fit
    /// one HTTP/2 DATA frame of the 1 MiB maximum; a chunk split over two frames costs the receiver an
    /// extra partial copy at each frame boundary).
    public var chunkBytes: Int = (4 << 20) - 1024
    /// HTTP/2 flow-control window the receiver grants (default 8 MiB): the bytes in flight per transfer.
    public var targetWindowBytes: Int = 16 << 20
    /// Bytes a sender may queue per stream before `send(layer:)` suspends (default 4 MiB): lets the
    /// producer compute the next layer while this one drains, with bounded memory.
    public var sendBufferBytes: Int = 8 << 20
    /// Longest wait for any progress from the peer: connecting, the handshake, each read and write.
    public var idleTimeout: Duration = .seconds(10)
    /// The listener's bounds on connections: handshake and idle timeouts, caps per peer and in total.
    public var listenerLimits = NodeServerLimits()
    /// Longest wait for a TCP connection.
    public var connectTimeout: Duration = .seconds(5)
    /// Whether this node found a usable RDMA device: set by `discoverRDMA(logger:)`.
    public var rdmaAvailable: Bool = false
    /// Which verbs library, RDMA device and port transfers use when RDMA is chosen.
    public var rdma = RDMASettings()

    public init(tls: NodeTLS?, policy: KVTransportPolicy = KVTransportPolicy(), hostID: String = KVTransportConfiguration.defaultHostID()) {
        self.tls = tls
        self.policy = policy
        self.hostID = hostID
    }

    /// Checks the settings; names the offending one.
    public func validated() throws(KVTransportError) -> Self {
        if tls == nil && !policy.insecure {
            throw KVTransportError(.invalidArgument, "KV transport: no TLS certificates configured and `insecure` not set")
        }
        guard (4096...(16 << 20)).contains(chunkBytes) else {
            throw KVTransportError(.invalidArgument, "KV transport: chunkBytes \(chunkBytes) outside 4 KiB…16 MiB")
        }
        guard (65535...(1 << 30)).contains(targetWindowBytes) else {
            throw KVTransportError(.invalidArgument, "KV transport: targetWindowBytes \(targetWindowBytes) outside 64 KiB…1 GiB")
        }
        guard sendBufferBytes >= chunkBytes else {
            throw KVTransportError(.invalidArgument, "KV transport: sendBufferBytes \(sendBufferBytes) smaller than chunkBytes \(chunkBytes)")
        }
        guard idleTimeout > .zero, connectTimeout > .zero else {
            throw KVTransportError(.invalidArgument, "KV transport: timeouts must be positive")
        }
        return self
    }

    var capabilities: KVTransportCapabilities {
        KVTransportCapabilities(hostID: hostID, sharedMemory: policy.allowSharedMemory, rdma: policy.allowRDMA && rdmaAvailable)
    }

    /// "hostname/boot-id": the same for every process of one boot of one machine (and distinct for
    /// containers, whose host names differ, since they may not share /dev/shm).
    public static func defaultHostID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? cString(name) : "unknown-host"
        var bootID = ""
        if let file = fopen("/proc/sys/kernel/random/boot_id", "r") {
            var line = [CChar](repeating: 0, count: 64)
            if fgets(&line, Int32(line.count), file) != nil {
                bootID = cString(line).filter { !$0.isWhitespace }
            }
            fclose(file)
        }
        return bootID.isEmpty ? host : "\(host)/\(bootID)"
    }
}
