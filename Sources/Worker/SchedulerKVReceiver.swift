import Inference
import KVTransport
import Logging

/// A decode worker's side of the KV transport: takes the transfers that generations opened on its
/// `DecodeScheduler` wait for, and lands each layer straight in the blocks the scheduler reserved (the HTTP/2
/// transports write every chunk there; shared memory and RDMA copy each verified layer there once).
public struct SchedulerKVReceiver: KVTransferReceiver {
    public let scheduler: DecodeScheduler
    public let identity: KVCompatibilityIdentity
    /// The `OpenDecode` reservations: which prefill node may send each request; nil takes KV for any request the
    /// scheduler awaits, from any prefill node (a scheduler driven in-process, as benchmarks do).
    public let reservations: KVReservations?
    private let logger: Logger

    /// `identity` must describe the scheduler's model, tokenizer and cache layout.
    public init(
        scheduler: DecodeScheduler, identity: KVCompatibilityIdentity, reservations: KVReservations? = nil,
        logger: Logger = Logger(label: "baton.worker")
    ) throws(WorkerError) {
        guard identity.describes(scheduler.layout) else {
            throw WorkerError(.invalidArgument, "the KV identity does not describe the decode scheduler's cache layout")
        }
        self.scheduler = scheduler
        self.identity = identity
        self.reservations = reservations
        self.logger = logger
    }

    public func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        // The transport set `sender` from the certificate (nil only in insecure mode, where nothing is known).
        if let reservations, let refusal = reservations.begin(request.requestID, from: request.sender) {
            logger.warning("refused KV for request \(request.requestID) from \(request.sender ?? "an unauthenticated sender"): \(refusal)")
            throw KVTransportError(.refused, refusal)
        }
        let differences = identity.differences(from: request.identity)
        guard differences.isEmpty else {
            throw KVTransportError(.incompatible, "request \(request.requestID): " + differences.joined(separator: "; "))
        }
        let expected = identity.layerByteCount(tokenCount: request.tokenCount, from: request.firstToken)
        guard request.layerByteCount == expected else {
            throw KVTransportError(
                .incompatible,
                "request \(request.requestID): \(request.layerByteCount) bytes per layer from position \(request.firstToken), expected \(expected)")
        }
        do {
            // The scheduler checks the transfer starts where the prefix this worker holds for it ends.
            return Inbound(
                arrival: try scheduler.beginArrival(
                    requestID: request.requestID, tokenCount: request.tokenCount, firstToken: request.firstToken,
                    transport: transport.name))
        } catch {
            throw KVTransportError(.refused, error.message, cause: error)
        }
    }

    /// One transfer landing in a generation's reserved blocks.
    private final class Inbound: KVInboundTransfer, @unchecked Sendable {
        let arrival: DecodeScheduler.KVArrival

        init(arrival: DecodeScheduler.KVArrival) {
            self.arrival = arrival
        }

        func landingZone(forLayer layer: Int) -> KVLandingZone? {
            arrival.landingRegions(layer: layer).map(KVLandingZone.init(regions:))
        }

        func layerLanded(_ layer: Int) async throws {
            try arrival.layerLanded(layer)
        }

        func receiveLayer(_ layer: Int, bytes: UnsafeRawBufferPointer) async throws {
            try arrival.receiveLayer(layer, bytes: bytes)
        }

        func complete(_ completion: KVTransferCompletion) async throws {
            try arrival.complete(logits: completion.logits)
        }

        func fail(_ error: KVTransportError) async {
            arrival.fail(error.description)
        }
    }
}

/// A prefill-only worker's listener takes no KV: every transfer is refused.
public struct RefusingKVReceiver: KVTransferReceiver {
    public let name: String

    public init(name: String) {
        self.name = name
    }

    public func beginTransfer(_ request: KVTransferRequest, transport: KVTransportKind) async throws -> any KVInboundTransfer {
        throw KVTransportError(.refused, "worker \(name) is a prefill worker and takes no KV (request \(request.requestID))")
    }
}
