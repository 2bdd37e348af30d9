import Inference
import KVTransport
import Synchronization

extension DecodeScheduler {
    /// Where a request's KV transfer stands. Guarded by the job's lock, which layer copies also hold, so the
    /// scheduler closing it (before freeing the blocks) waits for a copy in progress and refuses later ones.
    enum TransferState: Sendable {
        /// Opened; the scheduler has not reserved room yet.
        case pending
        /// Room reserved: where each layer's bytes go (per layer, per block).
        case awaiting([[KVImportSlice]])
        case receiving([[KVImportSlice]], KVTransportKind, started: ContinuousClock.Instant)
        /// Every layer and the completion arrived; the scheduler takes it from here.
        case arrived(Arrival)
        /// The transport gave up (its error in words).
        case failed(String)
        /// The request ended: writes are refused and the blocks may be reused.
        case closed

        var name: String {
            switch self {
            case .pending: "not reserved yet"
            case .awaiting: "waiting for its KV"
            case .receiving: "already receiving its KV"
            case .arrived: "already received"
            case .failed: "failed"
            case .closed: "closed"
            }
        }
    }

    /// A completed transfer, handed from the transport to the scheduler.
    struct Arrival: Sendable {
        var firstToken: Int32
        /// Present when the request asked for logprobs (prefill computed them).
        var firstTokenLogprobs: KVFirstTokenLogprobs?
        var sampler: Sampler
        var transport: KVTransportKind
        var bytes: Int
        var seconds: Double
    }

    /// One request from `open` until its stream ends. The scheduler thread alone touches the unguarded state.
    final class Job: @unchecked Sendable {
        let request: DecodeRequest
        /// Validated.
        let parameters: SamplingParameters
        let updates: AsyncStream<DecodeUpdate>.Continuation
        /// Blocks for prompt + max new tokens (capped at the context): committed while the request lives.
        let budgetBlocks: Int
        let opened = ContinuousClock.now
        /// When a transfer still missing fails the request.
        let deadline: ContinuousClock.Instant
        let transfer = Mutex<TransferState>(.pending)
        private let cancelled = Mutex<String?>(nil)

        /// Where the scheduler holds the job.
        enum Stage { case queued, waiting, active, ended }

        var stage = Stage.queued
        var committed = false
        var sequence: SequenceID?
        var sampler: Sampler?
        var lastToken: Int32 = 0
        var generated = 0
        var done = false
        var firstTokenAt: ContinuousClock.Instant?
        var transport: KVTransportKind?
        var kvBytes = 0
        var transferSeconds = 0.0

        init(
            request: DecodeRequest, parameters: SamplingParameters, updates: AsyncStream<DecodeUpdate>.Continuation,
            budgetBlocks: Int, deadline: ContinuousClock.Instant
        ) {
            self.request = request
            self.parameters = parameters
            self.updates = updates
            self.budgetBlocks = budgetBlocks
            self.deadline = deadline
        }

        /// Marks the job cancelled (the first reason wins) and stops its transfer from writing any more.
        func cancel(reason: String) {
            cancelled.withLock { if $0 == nil { $0 = reason } }
            transfer.withLock { state in
                switch state {
                case .pending, .awaiting, .receiving: state = .failed("cancelled: \(reason)")
                default: break
                }
            }
        }

        /// The cancellation reason, once cancelled.
        var cancellation: String? { cancelled.withLock { $0 } }

        /// Whether the scheduler must look at it before sleeping (a transfer ended or it was cancelled).
        var needsAttention: Bool {
            if cancellation != nil { return true }
            return transfer.withLock { state in
                switch state {
                case .arrived, .failed: true
                default: false
                }
            }
        }
    }
}
