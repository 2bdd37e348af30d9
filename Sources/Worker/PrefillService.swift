import Foundation
import Inference
import KVTransport
import Logging
import Synchronization

/// What one prefill shipment did, for `SubmitPrefillResponse`.
public struct PrefillResult: Sendable {
    public var requestID: String
    public var promptTokens: Int
    public var kvBytes: Int
    /// The bytes of the prompt positions the decode worker held already, which were not sent.
    public var kvBytesNotSent: Int
    public var transport: KVTransportKind
    /// From the request's arrival (queueing included) until the prompt's logits were ready.
    public var prefillSeconds: Double
    /// The hand-off, from opening the transfer (at arrival: layers stream while the prompt computes) to the
    /// decode worker's confirmation.
    public var transferSeconds: Double
    /// Arrival to confirmation: what this worker adds to the request's time to first token.
    public var totalSeconds: Double
}

/// The prefill worker's queue: prompts go to a `PrefillKVShipper`, which batches them into shared forward passes
/// in arrival order, each streaming its KV to the decode worker the request names over a pooled
/// `KVTransferClient` (one connection per decode address; the transport picks shared memory on one host by itself).
///
/// A shipment is cancelled by cancelling the task that awaits `submit`, by `cancel(requestID:)`, or by one of its
/// two bounds: how long it may wait in the queue before its first pass, and how long it may take from there; the
/// decode worker is then told the transfer is cancelled, and the prefill cache is freed.
public final class PrefillService: Sendable {
    public let shipper: PrefillKVShipper
    public let transport: KVTransportConfiguration
    /// Recent shipments' time from arrival to the decode worker's confirmation (seconds): queueing, prefill
    /// and the transfer's tail.
    public let shipmentTime = LatencyWindow()
    private let logger: Logger
    private let clients = Mutex<[Endpoint: KVTransferClient]>([:])
    private let running = Mutex<[String: Task<PrefillResult, any Error>]>([:])
    private let bytesSent = Atomic<Int>(0)
    private let bytesNotSent = Atomic<Int>(0)

    public init(shipper: PrefillKVShipper, transport: KVTransportConfiguration, logger: Logger) {
        self.shipper = shipper
        self.transport = transport
        self.logger = logger
    }

    /// Tokens a prompt may have (fewer than the prefill engine's context).
    public var contextLength: Int { shipper.engine.maxContext }

    /// Prompts waiting behind the one that arrived first: those not admitted yet, and the admitted ones past
    /// the first still being prefilled (they share passes, but each pass is as slow as its rows). What the
    /// placement service holds against its TTFT target, as it did when prompts ran one at a time.
    public var queued: Int { shipper.waiting + max(0, shipper.computing - 1) }
    /// Prompts being prefilled or sent.
    public var inFlight: Int { shipper.admitted }
    /// KV blocks of the prefill cache, and how many the admitted prompts leave free (they reserve their whole
    /// prompt at admission; the cache itself belongs to the shipper's thread).
    public var kvBlocks: (free: Int, total: Int) {
        let total = shipper.engine.cache.blockCount
        return (max(total - shipper.reservedBlocks, 0), total)
    }

    /// KV bytes shipped to decode workers since the start, and the bytes of prompt positions they held already,
    /// which were not sent.
    public var kvBytes: (sent: Int, notSent: Int) {
        (bytesSent.load(ordering: .relaxed), bytesNotSent.load(ordering: .relaxed))
    }

    /// Queues `prompt` (validated by the caller's edge), prefills it when its turn comes and ships its KV — from
    /// position `decodeHolds` on: the decode worker holds the positions before it — and last logits to decode node
    /// `decodeName` at `host:port` under `requestID` (the connection is refused unless the certificate there names
    /// `decodeName` with the decode role).
    ///
    /// A prompt queued behind others is waiting, not failing: `queueTimeout` bounds the wait for its first pass, and
    /// `deadline` runs from that pass to the decode worker's confirmation.
    ///
    /// Throws `WorkerError`: `.invalidArgument` (a prompt this worker cannot hold, or a `decodeHolds` that is no
    /// multiple of the block size below the prompt's length), `.transfer` (the decode worker refused — e.g. it
    /// holds another prefix than `decodeHolds` — or the transport failed), `.inference`, `.timeout` when a bound
    /// passed first, `.cancelled`.
    public func submit(
        requestID: String, prompt: [Int32], decodeHolds: Int = 0, decodeName: String, host: String, port: Int,
        queueTimeout: Duration, deadline: Duration
    ) async throws(WorkerError) -> PrefillResult {
        // 0: running; 1: still queued after `queueTimeout`; 2: past `deadline` after its first pass.
        let expired = Atomic<Int>(0)
        let decode = Endpoint(name: decodeName, host: host, port: port)
        let (started, starting) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let task = Task { () async throws -> PrefillResult in
            try await self.ship(requestID: requestID, prompt: prompt, decodeHolds: decodeHolds, to: decode) {
                starting.yield()
            }
        }
        let registered = running.withLock { running -> Bool in
            guard running[requestID] == nil else { return false }
            running[requestID] = task
            return true
        }
        guard registered else {
            task.cancel()
            throw WorkerError(.invalidArgument, "request \(requestID) is already being prefilled here")
        }
        defer { _ = running.withLock { $0.removeValue(forKey: requestID) } }
        let timer = Task {
            guard await Self.first(of: started, within: queueTimeout) else {
                if !Task.isCancelled {
                    expired.store(1, ordering: .relaxed)
                    task.cancel()
                }
                return
            }
            try await Task.sleep(for: deadline)
            expired.store(2, ordering: .relaxed)
            task.cancel()
        }
        defer { timer.cancel() }
        let result = await withTaskCancellationHandler { await task.result } onCancel: { task.cancel() }
        switch result {
        case .success(let value):
            shipmentTime.record(value.totalSeconds)
            bytesSent.add(value.kvBytes, ordering: .relaxed)
            bytesNotSent.add(value.kvBytesNotSent, ordering: .relaxed)
            return value
        case .failure(let error):
            switch expired.load(ordering: .relaxed) {
            case 1:
                throw WorkerError(
                    .timeout, "request \(requestID) waited \(Self.seconds(queueTimeout)) s in the prefill queue without starting",
                    cause: error as? WorkerError)
            case 2:
                throw WorkerError(
                    .timeout, "request \(requestID) did not finish within its deadline of \(Self.seconds(deadline)) s from its first pass",
                    cause: error as? WorkerError)
            default: break
            }
            if task.isCancelled || error is CancellationError {
                throw WorkerError(.cancelled, "request \(requestID) was cancelled", cause: error as? WorkerError)
            }
            if let error = error as? WorkerError { throw error }
            throw WorkerError(.inference, "request \(requestID) failed: \(error)")
        }
    }

    /// Whether `signal` yields within `limit` (false when it times out, or the waiting task is cancelled).
    private static func first(of signal: AsyncStream<Void>, within limit: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in signal { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    private static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f", Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18)
    }

    /// Cancels a queued or running shipment; returns whether there was one.
    @discardableResult
    public func cancel(requestID: String) -> Bool {
        guard let task = running.withLock({ $0[requestID] }) else { return false }
        task.cancel()
        return true
    }

    /// Closes every pooled connection to decode workers.
    public func closeConnections() async {
        let all = clients.withLock { clients -> [KVTransferClient] in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        for client in all { await client.close() }
    }

    /// Runs one shipment; reconnects and tries once more when the pooled connection turns out to be dead
    /// (the decode worker restarted): the prompt is then prefilled again.
    /// A decode node to ship to; the key of a pooled connection.
    private struct Endpoint: Hashable {
        var name: String
        var host: String
        var port: Int
        var description: String { "\(name) at \(host):\(port)" }
    }

    private func ship(
        requestID: String, prompt: [Int32], decodeHolds: Int, to decode: Endpoint,
        onStart: @escaping @Sendable () -> Void
    ) async throws(WorkerError) -> PrefillResult {
        var attempt = 0
        while true {
            attempt += 1
            try checkCancellation(requestID)
            let client = try await connection(decode)
            do {
                let report = try await shipper.ship(
                    requestID: requestID, prompt: prompt, receiverHolds: decodeHolds, via: client, onStart: onStart)
                return PrefillResult(
                    requestID: requestID, promptTokens: report.promptTokens,
                    kvBytes: report.transfer.bytes, kvBytesNotSent: report.bytesNotSent, transport: report.transfer.transport,
                    prefillSeconds: report.prefillSeconds, transferSeconds: report.transfer.seconds,
                    totalSeconds: report.totalSeconds)
            } catch {
                try checkCancellation(requestID)
                let connectionLost = (error.cause as? KVTransportError)?.code == .connectionFailed
                // A closed connection (lost, or refused at the handshake) is never reused.
                if connectionLost || !client.isActive { await evict(decode, client) }
                guard connectionLost, attempt == 1 else { throw error }
                logger.info("connection to decode worker \(decode.description) was lost; reconnecting for \(requestID)")
            }
        }
    }

    private func checkCancellation(_ requestID: String) throws(WorkerError) {
        if Task.isCancelled { throw WorkerError(.cancelled, "request \(requestID) was cancelled") }
    }

    private func connection(_ decode: Endpoint) async throws(WorkerError) -> KVTransferClient {
        let key = decode
        if let existing = clients.withLock({ $0[key] }) { return existing }
        let fresh: KVTransferClient
        do {
            fresh = try await KVTransferClient.connect(
                host: decode.host, port: decode.port, configuration: transport,
                expecting: .node(decode.name, as: .decode), logger: logger)
        } catch {
            throw WorkerError(.transfer, "cannot reach decode worker \(decode.description): \(error.message)", cause: error)
        }
        let (kept, extra) = clients.withLock { clients -> (KVTransferClient, KVTransferClient?) in
            if let other = clients[key] { return (other, fresh) }
            clients[key] = fresh
            return (fresh, nil)
        }
        if let extra { await extra.close() }
        return kept
    }

    private func evict(_ decode: Endpoint, _ client: KVTransferClient) async {
        let key = decode
        let removed = clients.withLock { clients -> Bool in
            guard clients[key] === client else { return false }
            clients.removeValue(forKey: key)
            return true
        }
        if removed { await client.close() }
    }
}
