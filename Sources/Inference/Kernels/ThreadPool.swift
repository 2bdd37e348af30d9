import CKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Persistent worker threads for the decode kernels: a fork/join costs about a microsecond while the
/// workers are spinning (no per-call thread creation or dispatch queue).
///
/// The caller's thread takes part in every `parallelFor`, so `ThreadPool(threads: 1)` runs everything
/// inline with no worker at all. Idle workers spin (about half a millisecond, which covers the gaps of a
/// decode loop) waiting for the next job, then sleep on a condition variable; the first job after a sleep
/// pays the wake-up (tens of microseconds), and the caller never waits for a worker that has not started.
///
/// Not reentrant: one `parallelFor` at a time. A nested or concurrent call does not corrupt anything — it
/// runs its loop serially on the calling thread — but it gets no parallelism.
public final class ThreadPool: @unchecked Sendable {
    /// Threads that run a `parallelFor`, counting the caller.
    public let threadCount: Int

    private let shared: PoolShared
    private let workers: [pthread_t]
    private let busy = Atomic<Bool>(false)

    // Scratch for the kernels' quantized activations (only touched inside the non-reentrant section).
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0

    /// What the scratch holds: the quantization of which input, so a mat-vec over the same input can skip it.
    struct QuantizedInput: Equatable {
        var input: UnsafeRawPointer
        var columns: Int
        var batch: Int
        var type: UInt32
    }
    /// Set by the kernels after quantizing into the scratch; cleared whenever the scratch moves.
    var quantizedInput: QuantizedInput?

    /// Starts `threads - 1` workers; `threads` below 1 is treated as 1, above 256 as 256. If the system
    /// refuses a thread, the pool runs with the ones it got (`threadCount` tells).
    public init(threads: Int) {
        let requested = min(max(threads, 1), 256)
        shared = PoolShared()
        var workers: [pthread_t] = []
        for _ in 1..<requested {
            let context = Unmanaged.passRetained(shared).toOpaque()
            // pthread_t is an integer on Linux and a non-null pointer on Darwin, which also passes the start
            // routine's argument as non-optional.
            #if canImport(Darwin)
            var thread: pthread_t?
            let status = pthread_create(&thread, nil, { poolWorkerMain($0) }, context)
            let started = status == 0 ? thread : nil
            #else
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { poolWorkerMain($0) }, context)
            let started: pthread_t? = status == 0 ? thread : nil
            #endif
            if let started {
                workers.append(started)
            } else {
                // Could not start a thread (resource limits): run with the ones we have.
                Unmanaged<PoolShared>.fromOpaque(context).release()
            }
        }
        self.workers = workers
        threadCount = workers.count + 1
    }

    deinit {
        shared.stop()
        for thread in workers { pthread_join(thread, nil) }
        scratch?.deallocate()
    }

    /// Runs `body(i)` for every `i` in `0..<count` exactly once, spread over the threads, and returns when
    /// all calls have finished. Indices are handed out in increasing order as threads ask for them, so
    /// give each index a contiguous slice of work.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        guard !workers.isEmpty, count > 1,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else {
            for i in 0..<count { body(i) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            var start = 0
            while start < count {
                let n = min(count - start, PoolShared.maxJobCount)
                let offset = start
                if offset == 0 {
                    shared.run(count: n, body)
                } else {
                    shared.run(count: n) { body(offset + $0) }
                }
                start += n
            }
        }
    }

    /// A scratch buffer of at least `bytes` bytes, 64-byte aligned, reused across calls. Only valid until
    /// the next call; callers must be inside this pool's single-owner section (the kernels).
    func scratchBuffer(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > scratchCapacity || scratch == nil {
            scratch?.deallocate()
            let capacity = max(bytes, 4096).kernelRoundedUp(to: 4096)
            scratch = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
            scratchCapacity = capacity
            quantizedInput = nil
        }
        return scratch!
    }
}

extension Int {
    /// Self rounded up to a multiple of `multiple` (> 0); used by the pool's scratch and the kernels' row split.
    func kernelRoundedUp(to multiple: Int) -> Int { (self + multiple - 1) / multiple * multiple }
}

/// State shared between the caller and the workers.
///
/// `ticket` packs the job's generation, size and next unclaimed index into one word, so a worker can only
/// claim an index of the job it saw: a late worker finds its generation gone or every index taken and goes
/// back to waiting, never touching a newer job's closure. The caller waits for `completed == count`, not for
/// the workers, so a descheduled worker never holds up a join.
private final class PoolShared: @unchecked Sendable {
    static let indexBits = 20
    static let maxJobCount = (1 << indexBits) - 1
    private static let indexMask = UInt64(maxJobCount)
    private static let spinIterations = 20_000

    private let ticket = Atomic<UInt64>(0)      // generation << 40 | count << 20 | next
    private let completed = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private var generation: UInt64 = 0          // caller only
    private var body: ((Int) -> Void)?          // written before a job is published, read after a claim
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Publishes a job, works on it, and returns once every index has completed.
    func run(count: Int, _ job: @escaping (Int) -> Void) {
        body = job
        completed.store(0, ordering: .relaxed)
        generation = (generation + 1) & 0xFF_FFFF
        ticket.store(generation << 40 | UInt64(count) << 20, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        work(generation: generation)
        var spins = 0
        while completed.load(ordering: .acquiring) < count {
            spins += 1
            if spins < 1000 { spinPause() } else { sched_yield() }
        }
        body = nil
    }

    /// Claims and runs indices of job `generation` until none are left.
    private func work(generation: UInt64) {
        var current = ticket.load(ordering: .acquiring)
        while true {
            guard current >> 40 == generation else { return }
            let count = (current >> 20) & Self.indexMask
            let next = current & Self.indexMask
            guard next < count else { return }
            let (exchanged, original) = ticket.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged {
                invoke(Int(next))
                completed.add(1, ordering: .releasing)
                current = ticket.load(ordering: .acquiring)
            } else {
                current = original
            }
        }
    }

    /// Calls the job's closure. Kept out of line so every retain/release of the closure happens before the
    /// completion count is bumped: the caller's `withoutActuallyEscaping` checks nobody still holds it.
    @inline(never)
    private func invoke(_ index: Int) {
        body.unsafelyUnwrapped(index)
    }

    func workerLoop() {
        var seen = ticket.load(ordering: .acquiring) >> 40
        while true {
            var spins = 0
            var generationNow = ticket.load(ordering: .acquiring) >> 40
            while generationNow == seen {
                if stopping.load(ordering: .relaxed) { return }
                spins += 1
                if spins < Self.spinIterations {
                    spinPause()
                } else {
                    pthread_mutex_lock(mutex)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while ticket.load(ordering: .sequentiallyConsistent) >> 40 == seen,
                          !stopping.load(ordering: .sequentiallyConsistent) {
                        pthread_cond_wait(condition, mutex)
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(mutex)
                    spins = 0
                }
                generationNow = ticket.load(ordering: .acquiring) >> 40
            }
            seen = generationNow
            work(generation: generationNow)
        }
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// A worker thread's start routine: takes over the pool state retained for it and runs the worker loop.
private func poolWorkerMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<PoolShared>.fromOpaque(context!).takeRetainedValue().workerLoop()
    return nil
}

@inline(__always)
private func spinPause() {
    bk_cpu_relax()
}
