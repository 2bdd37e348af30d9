import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import Inference

@Suite("ThreadPool")
struct ThreadPoolTests {
    /// Per-index hit counters that threads may bump concurrently.
    final class Hits: Sendable {
        let counters: Mutex<[Int]>
        init(_ n: Int) { counters = Mutex(Array(repeating: 0, count: n)) }
        func hit(_ i: Int) { counters.withLock { $0[i] += 1 } }
        var all: [Int] { counters.withLock { $0 } }
    }

    @Test("parallelFor runs every index exactly once, over many calls", arguments: [1, 2, 3, 5])
    func everyIndexOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threadCount == threads)
        for count in [1, 2, 3, 7, 64, 1000] {
            let hits = Hits(count)
            for _ in 0..<200 { pool.parallelFor(count) { hits.hit($0) } }
            #expect(hits.all == Array(repeating: 200, count: count), "count \(count)")
        }
    }

    @Test("work done inside parallelFor is visible when it returns")
    func resultsVisibleAfterJoin() {
        let pool = ThreadPool(threads: 2)
        let n = 4096
        let buffer = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
        defer { buffer.deallocate() }
        for round in 0..<300 {
            pool.parallelFor(n / 64) { chunk in
                for i in (chunk * 64)..<(chunk * 64 + 64) { buffer[i] = i &* round }
            }
            var ok = true
            for i in 0..<n where buffer[i] != i &* round { ok = false }
            #expect(ok, "round \(round)")
        }
    }

    @Test("more than one thread takes part when work is long enough, also after workers went to sleep",
          arguments: [false, true])
    func threadsParticipate(afterSleep: Bool) {
        let pool = ThreadPool(threads: 2)
        let sawOtherThread = Atomic<Bool>(false)
        let caller = pthread_self()
        for _ in 0..<50 where !sawOtherThread.load(ordering: .relaxed) {
            // Idle workers spin well under a millisecond before blocking on the condition variable.
            if afterSleep { usleep(20_000) }
            pool.parallelFor(2) { _ in
                if pthread_equal(pthread_self(), caller) == 0 { sawOtherThread.store(true, ordering: .relaxed) }
                // Long enough that the caller cannot finish both indices before the worker claims one.
                let start = ContinuousClock.now
                while ContinuousClock.now - start < .milliseconds(2) {}
            }
        }
        let saw = sawOtherThread.load(ordering: .relaxed)
        #expect(saw)
    }

    @Test("a nested parallelFor runs serially instead of deadlocking")
    func nestedCallRunsInline() {
        let pool = ThreadPool(threads: 2)
        let hits = Hits(16)
        pool.parallelFor(4) { outer in
            pool.parallelFor(4) { inner in hits.hit(outer * 4 + inner) }
        }
        #expect(hits.all == Array(repeating: 1, count: 16))
    }

    @Test("zero or negative counts do nothing; thread counts are clamped to at least one")
    func edgeCases() {
        let pool = ThreadPool(threads: 0)
        #expect(pool.threadCount == 1)
        let hits = Hits(1)
        pool.parallelFor(0) { hits.hit($0) }
        pool.parallelFor(-3) { hits.hit($0) }
        #expect(hits.all == [0])
    }

    @Test("pools can be created and destroyed repeatedly while workers sleep or spin")
    func createAndDestroy() {
        for i in 0..<20 {
            let pool = ThreadPool(threads: 3)
            let hits = Hits(10)
            pool.parallelFor(10) { hits.hit($0) }
            if i % 2 == 0 { usleep(3000) }
            #expect(hits.all == Array(repeating: 1, count: 10))
        }
    }
}
