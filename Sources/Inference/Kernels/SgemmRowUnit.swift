import CBLAS
import Synchronization

/// The row unit under which OpenBLAS's `sgemm` gives a row of `Y = X·Wᵀ` the same bits whatever else is in the
/// call, measured once per process and shape on the library and CPU kernels actually loaded.
///
/// Why it must be measured: OpenBLAS picks its kernels per CPU at run time, and they differ. The AVX-512 ones
/// (SkylakeX, Cooperlake) give a row the same bits at any index of any call, except in calls small enough for
/// their separate small-matrix kernel (a few rows of a 192 × 576 matrix). The Haswell kernels (which every
/// AVX2-only CPU gets, Zen included) work on tiles of 12 rows and round a row differently at each index of a
/// tile, and differently again outside a full tile: there a row keeps its bits only at the same index modulo 12,
/// in calls whose rows start and end on multiples of 12 (measured with OpenBLAS 0.3.21: a row moved by 1…11
/// rows changes; by 12 or 24 it does not). Other cores and libraries have their own tiles.
///
/// So `PrefillEngine` places a token at a row ≡ its position (mod U) and calls `sgemm` only on whole units of U
/// rows; this finds the smallest U of `candidates` under which that gives every row its bits for all projection
/// shapes of a model (measured: 12 on Haswell and Zen, 8 on SkylakeX and Cooperlake, 1 on Sandybridge and
/// Nehalem, for the default model). A probe samples the kernels rather than proving them, so the engine's tests
/// check whole forward passes cut, packed and threaded every way against each other on the machine they run on.
enum SgemmRowUnit {
    /// Divisors of 48, smallest first: 48 holds whole tiles of 1, 2, 4, 8 and 16 rows (the AVX-512 and ARM
    /// kernels' widths) and of 12 (Haswell's).
    static let candidates = [1, 2, 3, 4, 6, 8, 12, 16, 24, 48]

    /// A projection's shape: `Y[rows × columns] = X[rows × inner] · W[columns × inner]ᵀ`.
    struct Shape: Hashable {
        var columns: Int
        var inner: Int
    }

    /// Per set of shapes (sorted), the unit found.
    private static let measured = Mutex<[[Shape]: Int]>([:])

    /// The smallest candidate that holds for every shape (the largest when none does, which the engine tests
    /// would then report). Takes up to ~0.5 s for a new set of shapes, once per process; OpenBLAS must be on one
    /// thread.
    static func unit(for shapes: some Sequence<Shape>) -> Int {
        let key = Set(shapes).sorted { ($0.columns, $0.inner) < ($1.columns, $1.inner) }
        return measured.withLock { known in
            if let unit = known[key] { return unit }
            let probes = key.map(Probe.init)
            let unit = candidates.first { unit in probes.allSatisfy { $0.holds(unit) } } ?? candidates.last!
            known[key] = unit
            return unit
        }
    }

    /// One shape's test: a reference block of 48 rows computed in one call, and the same rows computed in calls
    /// that start at other multiples of a candidate unit (other rows around them), and a call of one unit.
    private final class Probe {
        let n: Int, k: Int
        let rows = 48, widest = SgemmRowUnit.candidates.last!
        let x, moved, w, reference, y: UnsafeMutablePointer<Float>

        init(_ shape: Shape) {
            n = shape.columns
            k = shape.inner
            let capacity = (rows + 2 * widest) * k
            x = .allocate(capacity: capacity)
            moved = .allocate(capacity: capacity)
            w = .allocate(capacity: n * k)
            reference = .allocate(capacity: rows * n)
            y = .allocate(capacity: (rows + 2 * widest) * n)
            // Values of activation and weight size; any fixed pseudo-random pattern exercises every lane.
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            func next() -> Float {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
            }
            for i in 0..<capacity { x[i] = next() }
            for i in 0..<(n * k) { w[i] = next() * 0.05 }
            multiply(x, rows: rows, into: reference)
        }

        deinit {
            for p in [x, moved, w, reference, y] { p.deallocate() }
        }

        func multiply(_ a: UnsafePointer<Float>, rows m: Int, into c: UnsafeMutablePointer<Float>) {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), w, Int32(k), 0,
                c, Int32(n))
        }

        func holds(_ unit: Int) -> Bool {
            // One unit alone: the smallest call the engine makes.
            multiply(x, rows: unit, into: y)
            if !same(y, reference, count: unit * n) { return false }
            // The reference rows shifted by each multiple of the unit below 48.
            for shift in stride(from: unit, to: widest, by: unit) {
                let m = (shift + rows + unit - 1) / unit * unit
                moved.update(from: x + rows * k, count: shift * k)
                (moved + shift * k).update(from: x, count: rows * k)
                (moved + (shift + rows) * k).update(from: x + (rows + shift) * k, count: (m - shift - rows) * k)
                multiply(moved, rows: m, into: y)
                if !same(y + shift * n, reference, count: rows * n) { return false }
            }
            return true
        }

        private func same(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Bool {
            for i in 0..<count where a[i].bitPattern != b[i].bitPattern { return false }
            return true
        }
    }
}
