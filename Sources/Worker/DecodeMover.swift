import Foundation
import Inference
import KVTransport
import Logging
import Synchronization

/// A draining decode worker's side of moving its generations away instead of waiting for them.
///
/// Once the scheduler parks a generation (`DecodeScheduler.parkMovable`), its `OpenDecode` handler sends the router a
/// `moving` event and `offer`s it here. The router opens it on another decode worker with `moved` (that worker
/// reserves room and takes the KV from this one only) and calls `MoveDecode`: `move` then streams the KV of prompt +
/// generated tokens but the last over the KV transport (mutual-TLS HTTP/2, shared memory or RDMA, as the two ends
/// negotiate; the same checksums and identity check as a prefill hand-off), and the generation is gone from here.
/// When the router has nowhere to put it, asks to keep it, does not answer within `offerTimeout`, or the transfer
/// fails, the generation goes on here from where it paused (`DrainMove` settles which, once).
public final class DecodeMover: Sendable {
    /// What the moves came to since the start.
    public struct Tally: Sendable, Equatable {
        public var moved = 0
        /// Went on here: no move came, or the router had no room elsewhere.
        public var kept = 0
        /// A shipment failed (the generation went on here).
        public var failed = 0
        public var bytes = 0
    }

    /// What one `move` did.
    public enum Outcome: Sendable {
        case moved(KVTransferReport, tokens: Int)
        case kept
    }

    /// Where a generation goes: a decode node by its certificate name, and its address.
    public struct Target: Sendable {
        public var name: String
        public var host: String
        public var port: Int

        public init(name: String, host: String, port: Int) {
            self.name = name
            self.host = host
            self.port = port
        }
    }

    public let identity: KVCompatibilityIdentity
    public let transport: KVTransportConfiguration
    /// How long a paused generation waits for the router's move before it goes on here; also the most a shipment
    /// may take.
    public let offerTimeout: Duration
    private let logger: Logger
    private let offers = Mutex<[String: Offer]>([:])
    private let counts = Mutex(Tally())

    public init(identity: KVCompatibilityIdentity, transport: KVTransportConfiguration, offerTimeout: Duration, logger: Logger) {
        self.identity = identity
        self.transport = transport
        self.offerTimeout = offerTimeout
        self.logger = logger
    }

    public var tally: Tally { counts.withLock { $0 } }

    /// Offers a parked generation for a move until it is decided; the caller sends the router the `moving` event
    /// and awaits `Offer.decision()`, then `withdraw`s it.
    func offer(_ departure: DecodeScheduler.KVDeparture) -> Offer {
        let offer = Offer(departure: departure, deadline: .now + offerTimeout)
        offers.withLock { $0[departure.requestID] = offer }
        return offer
    }

    func withdraw(_ offer: Offer) {
        offers.withLock { offers in
            if offers[offer.departure.requestID] === offer { offers[offer.departure.requestID] = nil }
        }
        if case .kept(let reason)? = offer.settled {
            counts.withLock { $0.kept += 1 }
            logger.info("request \(offer.departure.requestID) goes on here: \(reason)")
        }
    }

    /// `MoveDecode`: ships the parked generation `requestID` to `target` (which has opened it with `moved`), or with
    /// no target lets it go on here. At most `bound` (and `offerTimeout`). Throws `.notFound` when no generation
    /// waits to move here under that id, `.conflict` when its move was decided otherwise, `.transfer` or
    /// `.timeout` when the shipment failed (the generation then goes on here).
    public func move(requestID: String, to target: Target?, within bound: Duration?) async throws(WorkerError) -> Outcome {
        guard let offer = offers.withLock({ $0[requestID] }) else {
            throw WorkerError(.notFound, "request \(requestID) is not waiting to move from here")
        }
        guard let target else {
            offer.settle { $0.keep("the router has no other decode worker with room for it") }
            return .kept
        }
        if let refusal = offer.startShipping(to: target.name) {
            throw WorkerError(.conflict, "request \(requestID) cannot move to \(target.name): \(refusal)")
        }
        let departure = offer.departure
        let limit = min(bound ?? offerTimeout, offerTimeout)
        let expired = Atomic<Bool>(false)
        let task = Task { [self] () async throws -> KVTransferReport in
            try await ship(departure, to: target)
        }
        let timer = Task {
            try await Task.sleep(for: limit)
            expired.store(true, ordering: .relaxed)
            task.cancel()
        }
        let result = await withTaskCancellationHandler { await task.result } onCancel: { task.cancel() }
        timer.cancel()
        switch result {
        case .success(let report):
            departure.shipped()
            offer.settle { $0.shipped() }
            counts.withLock { tally in
                tally.moved += 1
                tally.bytes += report.bytes
            }
            logger.info(
                "moved request \(requestID) to \(target.name) after \(departure.state.generated.count) tokens: KV of \(departure.tokenCount) positions, \(report.bytes) bytes over \(report.transport.name) in \(Int(report.seconds * 1000)) ms; nothing computed again")
            return .moved(report, tokens: departure.tokenCount)
        case .failure(let error):
            departure.shippingFailed()
            let failure = expired.load(ordering: .relaxed)
                ? WorkerError(.timeout, "moving request \(requestID) to \(target.name) took longer than \(limit)", cause: error)
                : (error as? WorkerError ?? WorkerError(.transfer, "moving request \(requestID) to \(target.name) failed: \(error)"))
            offer.settle { $0.shipFailed(failure.message) }
            counts.withLock { $0.failed += 1 }
            logger.warning("moving request \(requestID) to \(target.name) failed: \(failure.message); it goes on here")
            throw failure
        }
    }

    private func ship(_ departure: DecodeScheduler.KVDeparture, to target: Target) async throws(WorkerError) -> KVTransferReport {
        let regions: [[UnsafeRawBufferPointer]]
        do { regions = try departure.beginShipping() } catch {
            throw WorkerError(.conflict, "request \(departure.requestID) cannot move: \(error.message)", cause: error)
        }
        let client: KVTransferClient
        do {
            client = try await KVTransferClient.connect(
                host: target.host, port: target.port, configuration: transport, expecting: .node(target.name, as: .decode),
                logger: logger)
        } catch {
            throw WorkerError(.transfer, "cannot reach decode worker \(target.name) at \(target.host):\(target.port): \(error.message)", cause: error)
        }
        // A drain moves a few generations once: a connection per move, closed after it.
        let tokens = departure.tokenCount
        let outcome: Result<KVTransferReport, KVTransportError>
        do {
            outcome = .success(
                try await client.transfer(
                    KVTransferRequest(requestID: departure.requestID, identity: identity, tokenCount: tokens)
                ) { transfer in
                    for (layer, blocks) in regions.enumerated() {
                        try await transfer.send(layer: layer, regions: blocks)
                    }
                    return KVTransferCompletion(tokenCount: tokens, logits: [])
                })
        } catch {
            outcome = .failure(error)
        }
        await client.close()
        switch outcome {
        case .success(let report): return report
        case .failure(let error):
            throw WorkerError(.transfer, "the KV transfer to \(target.name) failed: \(error.message)", cause: error)
        }
    }

    /// One offered generation: its `DrainMove`, and the handler waiting for the decision.
    final class Offer: Sendable {
        let departure: DecodeScheduler.KVDeparture
        let deadline: ContinuousClock.Instant
        private let state: Mutex<(move: DrainMove, waiter: CheckedContinuation<DrainMove.Decision, Never>?)>

        init(departure: DecodeScheduler.KVDeparture, deadline: ContinuousClock.Instant) {
            self.departure = departure
            self.deadline = deadline
            state = Mutex((DrainMove(deadline: deadline), nil))
        }

        var settled: DrainMove.Decision? { state.withLock { $0.move.decision } }

        func startShipping(to target: String) -> String? {
            state.withLock { $0.move.ship(to: target, at: .now) }
        }

        /// Applies `change`; a decision it reaches wakes the waiting handler.
        func settle(_ change: (inout DrainMove) -> DrainMove.Decision?) {
            let (decision, waiter) = state.withLock { state -> (DrainMove.Decision?, CheckedContinuation<DrainMove.Decision, Never>?) in
                guard let decision = change(&state.move) else { return (nil, nil) }
                defer { state.waiter = nil }
                return (decision, state.waiter)
            }
            if let decision { waiter?.resume(returning: decision) }
        }

        /// Waits for the decision: a move, a keep, the deadline passing with no shipment under way, or the calling
        /// task's cancellation (the router reset the stream: it goes on here, to be cancelled by the caller).
        func decision() async -> DrainMove.Decision {
            let deadline = deadline
            let timer = Task { [self] in
                try await Task.sleep(until: deadline, clock: .continuous)
                settle { $0.expire(at: .now) }
            }
            defer { timer.cancel() }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (waiter: CheckedContinuation<DrainMove.Decision, Never>) in
                    let ready = state.withLock { state -> DrainMove.Decision? in
                        if let decision = state.move.decision { return decision }
                        state.waiter = waiter
                        return nil
                    }
                    if let ready { waiter.resume(returning: ready) }
                }
            } onCancel: {
                settle { $0.keep("the router went away") }
            }
        }
    }
}
