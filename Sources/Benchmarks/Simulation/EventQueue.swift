/// The simulator's future: events ordered by time, then by the order they were scheduled (so that two events at the
/// same instant run first come, first served and a run is reproducible). A binary min-heap.
struct EventQueue<Payload> {
    private struct Entry {
        let time: Double
        let order: Int
        let payload: Payload
    }

    private var heap: [Entry] = []
    private var scheduled = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func schedule(_ payload: Payload, at time: Double) {
        heap.append(Entry(time: time, order: scheduled, payload: payload))
        scheduled += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.earlier(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// The earliest event and its time; nil when none is left.
    mutating func next() -> (time: Double, payload: Payload)? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var best = parent
                if left < heap.count, Self.earlier(heap[left], heap[best]) { best = left }
                if right < heap.count, Self.earlier(heap[right], heap[best]) { best = right }
                guard best != parent else { break }
                heap.swapAt(parent, best)
                parent = best
            }
        }
        return (first.time, first.payload)
    }

    private static func earlier(_ a: Entry, _ b: Entry) -> Bool {
        a.time != b.time ? a.time < b.time : a.order < b.order
    }
}
