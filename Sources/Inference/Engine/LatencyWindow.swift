import Synchronization

/// The mean of the last `capacity` samples of a latency, for load reports. Thread-safe.
public final class LatencyWindow: Sendable {
    private struct Ring {
        var values: [Double] = []
        var next = 0
    }

    public let capacity: Int
    private let ring = Mutex(Ring())

    public init(capacity: Int = 32) {
        self.capacity = max(capacity, 1)
    }

    public func record(_ value: Double) {
        guard value.isFinite else { return }
        ring.withLock { ring in
            if ring.values.count < capacity {
                ring.values.append(value)
            } else {
                ring.values[ring.next] = value
            }
            ring.next = (ring.next + 1) % capacity
        }
    }

    /// The mean of the recent samples; nil when there are none.
    public var mean: Double? {
        ring.withLock { ring in
            ring.values.isEmpty ? nil : ring.values.reduce(0, +) / Double(ring.values.count)
        }
    }
}
