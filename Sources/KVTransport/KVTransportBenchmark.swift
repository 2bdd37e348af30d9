import Logging
import RPC
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The KV hand-off benchmark behind `baton bench kv`: hands the KV of prompts of several lengths over
/// each transport that runs here — mutual-TLS HTTP/2, plaintext HTTP/2, shared memory — on loopback,
/// beside a plain memcpy of the same bytes. Sender and receiver live in this process on separate event
/// loops; every layer lands in a preallocated pool, as in a KV import: the HTTP/2 transports write chunks
/// straight into it (the receiver's landing zone), shared memory copies each verified layer in.
/// Figures are reported, never asserted.
public enum KVTransportBenchmark {
    /// One measured hand-off: the best and median of `repetitions` runs.
    public struct Measurement: Sendable, Codable, Equatable {
        public var transport: String
        public var tokens: Int
        public var bytes: Int
        public var bestSeconds: Double
        public var medianSeconds: Double
        /// CPU time of the whole process (user + system, every thread) per timed run: with sender and
        /// receiver in one process, the cost of a hand-off whatever else the machine is doing.
        public var cpuSecondsPerRun: Double = 0
        /// Bytes / best time, in GB/s (10⁹ bytes).
        public var gigabytesPerSecond: Double { bestSeconds > 0 ? Double(bytes) / bestSeconds / 1e9 : 0 }
    }

    public struct Results: Sendable, Equatable {
        public var measurements: [Measurement]

        /// GB/s of `transport` at the largest token count measured.
        public func gigabytesPerSecond(_ transport: String) -> Double? {
            measurements.filter { $0.transport == transport }.max { $0.tokens < $1.tokens }?.gigabytesPerSecond
        }
    }

    public static let memcpyName = "memcpy"
    /// CRC32C (the hardware kernel) of the same bytes on one core: the integrity check's cost.
    public static let crc32cName = "crc32c"

    /// The KV layout of the default model (SmolLM2-135M): 30 layers, 3 KV heads of 64, f16, blocks of 16.
    public static let defaultIdentity = KVCompatibilityIdentity(
        modelFingerprint: "benchmark", tokenizerHash: "benchmark", layers: 30, kvHeads: 3, headDim: 64,
        elementType: .f16, blockSize: 16)

    /// Runs every transport (or those named in `transports`, e.g. `tls-h2`) at every token count.
    /// `progress` receives one line per measurement.
    public static func run(
        tokenCounts: [Int] = [2048, 8192], repetitions: Int = 3, identity: KVCompatibilityIdentity = defaultIdentity,
        transports: Set<String>? = nil, progress: @Sendable (String) -> Void = { _ in }
    ) async throws(KVTransportError) -> Results {
        guard repetitions > 0, !tokenCounts.isEmpty, tokenCounts.allSatisfy({ $0 > 0 }) else {
            throw KVTransportError(.invalidArgument, "benchmark needs positive token counts and repetitions")
        }
        var logger = Logger(label: "baton.bench-kv")
        logger.logLevel = .error
        let authority: ClusterCertificates.Issued, serverNode: ClusterCertificates.Issued, clientNode: ClusterCertificates.Issued
        do {
            authority = try ClusterCertificates.makeAuthority(name: "Baton benchmark CA")
            serverNode = try ClusterCertificates.issueNode("bench-decode", roles: [.decode], authority: authority)
            clientNode = try ClusterCertificates.issueNode("bench-prefill", roles: [.prefill], authority: authority)
        } catch {
            throw KVTransportError(rpc: error)
        }
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

        func configuration(_ node: ClusterCertificates.Issued?, sharedMemory: Bool) -> KVTransportConfiguration {
            var configuration = KVTransportConfiguration(
                tls: node.map { ClusterCertificates.tls(node: $0, authorityPEM: authority.certificatePEM) },
                policy: KVTransportPolicy(allowRDMA: false, allowSharedMemory: sharedMemory, insecure: node == nil),
                hostID: "benchmark-host")
            configuration.idleTimeout = .seconds(30)
            return configuration
        }
        var setups: [(name: String, server: KVTransportConfiguration, client: KVTransportConfiguration)] = [
            (KVTransportKind.tlsHTTP2.name, configuration(serverNode, sharedMemory: false), configuration(clientNode, sharedMemory: false)),
            (KVTransportKind.plaintextHTTP2.name, configuration(nil, sharedMemory: false), configuration(nil, sharedMemory: false)),
            (KVTransportKind.sharedMemory.name, configuration(serverNode, sharedMemory: true), configuration(clientNode, sharedMemory: true)),
        ]

        if let transports { setups.removeAll { !transports.contains($0.name) } }
        let results: Result<Results, KVTransportError>
        do throws(KVTransportError) {
            results = .success(try await measure(
                tokenCounts: tokenCounts, repetitions: repetitions, identity: identity, setups: setups,
                serverGroup: serverGroup, clientGroup: clientGroup, logger: logger, progress: progress))
        } catch {
            results = .failure(error)
        }
        try? await serverGroup.shutdownGracefully()
        try? await clientGroup.shutdownGracefully()
        return try results.get()
    }

    private static func measure(
        tokenCounts: [Int], repetitions: Int, identity: KVCompatibilityIdentity,
        setups: [(name: String, server: KVTransportConfiguration, client: KVTransportConfiguration)],
        serverGroup: MultiThreadedEventLoopGroup, clientGroup: MultiThreadedEventLoopGroup, logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws(KVTransportError) -> Results {
        var measurements: [Measurement] = []
        for tokens in tokenCounts {
            let request = KVTransferRequest(requestID: "bench", identity: identity, tokenCount: tokens)
            let source = LayerSource(layers: identity.layers, layerBytes: request.layerByteCount)
            let sink = PoolReceiver(totalBytes: request.totalByteCount, layerBytes: request.layerByteCount)

            var times: [Double] = []
            for _ in 0..<repetitions { times.append(source.timeMemcpy(into: sink)) }
            measurements.append(measurement(memcpyName, tokens: tokens, bytes: request.totalByteCount, times: times))
            progress(describe(measurements.last!))
            times = []
            for _ in 0..<repetitions { times.append(source.timeChecksum()) }
            measurements.append(measurement(crc32cName, tokens: tokens, bytes: request.totalByteCount, times: times))
            progress(describe(measurements.last!))

            for setup in setups {
                let server = try await KVTransferServer.bind(
                    host: "127.0.0.1", port: 0, configuration: setup.server, identity: identity, receiver: sink,
                    logger: logger, group: serverGroup)
                let serving = Task { await server.run() }
                let client: KVTransferClient
                do {
                    client = try await KVTransferClient.connect(
                        host: "127.0.0.1", port: server.port, configuration: setup.client, logger: logger, group: clientGroup)
                } catch {
                    await server.close()
                    await serving.value
                    throw error
                }
                var times: [Double] = []
                var cpuSeconds = 0.0
                do throws(KVTransportError) {
                    // One untimed warm-up: TLS session, window growth, page faults in the pool.
                    for index in 0...repetitions {
                        var timed = request
                        timed.requestID = "bench-\(index)"
                        let started = ContinuousClock.now
                        let cpuStarted = processCPUSeconds()
                        let report = try await client.transfer(timed) { transfer in
                            for layer in 0..<identity.layers {
                                try await transfer.send(layer: layer, bytes: source.layer(layer))
                            }
                            return KVTransferCompletion(tokenCount: tokens, logits: [])
                        }
                        if index > 0 {
                            times.append(((ContinuousClock.now - started) / .seconds(1)))
                            cpuSeconds += processCPUSeconds() - cpuStarted
                        }
                        guard report.transport.name == setup.name else {
                            throw KVTransportError(.invalidArgument, "benchmark of \(setup.name) ran over \(report.transport.name)")
                        }
                    }
                } catch {
                    await client.close()
                    await server.close()
                    await serving.value
                    throw error
                }
                await client.close()
                await server.close()
                await serving.value
                var m = measurement(setup.name, tokens: tokens, bytes: request.totalByteCount, times: times)
                m.cpuSecondsPerRun = cpuSeconds / Double(repetitions)
                measurements.append(m)
                progress(describe(measurements.last!))
            }
        }
        return Results(measurements: measurements)
    }

    public static func describe(_ m: Measurement) -> String {
        let megabytes = Double(m.bytes) / 1e6
        let cpu = m.cpuSecondsPerRun > 0 ? ", \(format(m.cpuSecondsPerRun * 1e9 / Double(m.bytes))) CPU s/GB" : ""
        return "\(m.transport) \(m.tokens) tokens (\(Int(megabytes.rounded())) MB): \(format(m.gigabytesPerSecond)) GB/s best, "
            + "\(format(Double(m.bytes) / m.medianSeconds / 1e9)) GB/s median\(cpu)"
    }

    static func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    private static func measurement(_ name: String, tokens: Int, bytes: Int, times: [Double]) -> Measurement {
        let sorted = times.sorted()
        return Measurement(transport: name, tokens: tokens, bytes: bytes, bestSeconds: sorted[0], medianSeconds: sorted[sorted.count / 2])
    }

    /// User + system CPU time of this process so far (every thread), in seconds.
    public static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        func value(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return value(usage.ru_utime) + value(usage.ru_stime)
    }

}

/// Pseudo-random KV bytes, one contiguous allocation for all layers (as a prefill worker holds them).
private final class LayerSource: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    let layerBytes: Int
    let layers: Int

    init(layers: Int, layerBytes: Int) {
        self.layers = layers
        self.layerBytes = layerBytes
        storage = .allocate(byteCount: layers * layerBytes, alignment: 64)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let words = storage.bindMemory(to: UInt64.self)
        for index in words.indices {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            words[index] = state
        }
    }

    deinit { storage.deallocate() }

    func layer(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[(index * layerBytes)..<((index + 1) * layerBytes)])
    }

    /// CRC32C of every layer.
    func timeChecksum() -> Double {
        let started = ContinuousClock.now
        var combined: UInt32 = 0
        for index in 0..<layers { combined ^= CRC32C.checksum(layer(index)) }
        let elapsed = ((ContinuousClock.now - started) / .seconds(1))
        return combined == 0x1234_5678 ? elapsed * 1.0000001 : elapsed  // keeps the checksums alive
    }

    /// memcpy of every layer into the pool, as the baseline.
    func timeMemcpy(into sink: PoolReceiver) -> Double {
        let started = ContinuousClock.now
        for index in 0..<layers { sink.store(layer: index, bytes: layer(index)) }
        return ((ContinuousClock.now - started) / .seconds(1))
    }
}

/// A decode side whose "KV cache" is one preallocated buffer: HTTP/2 chunks land in it directly; layers
/// from shared memory are copied in once verified.
private final class PoolReceiver: KVTransferReceiver, KVInboundTransfer, @unchecked Sendable {
    let pool: UnsafeMutableRawBufferPointer
    let layerBytes: Int

    init(totalBytes: Int, layerBytes: Int) {
        pool = .allocate(byteCount: totalBytes, alignment: 64)
        pool.initializeMemory(as: UInt8.self, repeating: 0)
        self.layerBytes = layerBytes
    }

    deinit { pool.deallocate() }

    func store(layer: Int, bytes: UnsafeRawBufferPointer) {
        UnsafeMutableRawBufferPointer(rebasing: pool[(layer * layerBytes)..<((layer + 1) * layerBytes)]).copyMemory(from: bytes)
    }

    func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        guard request.layerByteCount == layerBytes else { throw KVTransportError(.refused, "unexpected layer size") }
        return self
    }

    func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws { store(layer: layer, bytes: bytes) }
    func landingZone(forLayer layer: Int) -> KVLandingZone? {
        KVLandingZone(regions: [UnsafeMutableRawBufferPointer(rebasing: pool[(layer * layerBytes)..<((layer + 1) * layerBytes)])])
    }
    func complete(_ completion: KVTransferCompletion) async throws {}
    func fail(_ error: KVTransportError) async {}
}
