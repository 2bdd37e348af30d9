import CBLAS
import CKernels
import Dispatch
import Foundation
import GGUF
import Synchronization

/// The decode-path compute kernels: quantized mat-vec read straight from GGUF blocks, dequantization and
/// the f16 / f32 vector helpers of attention.
///
/// The C kernels (target `CKernels`) run the best instruction-set level the CPU has — AVX-512 VNNI, AVX2+FMA or
/// scalar on x86-64; NEON with or without `sdot`, or scalar, on AArch64 — unless the environment variable
/// `BATON_ISA` caps it (see ``Selection``). Every kernel call of the engines passes ``isa``. Pointers passed here
/// are only used during the call.
public enum Kernels {
    /// The kernel level every engine runs, chosen once: the CPU's best, capped by `BATON_ISA` (scalar while
    /// `BATON_ISA` is unusable, which ``checkSelection()`` reports).
    static let isa: bk_isa = bk_best_isa()

    /// What runs the arithmetic, for reports (`baton inspect`, `bench model`).
    public struct Selection: Sendable, Equatable, CustomStringConvertible {
        /// The kernels' level, as `BATON_ISA` spells it: "avx512", "avx2", "neon-dotprod", "neon", "scalar".
        public let isa: String
        /// The best level this CPU runs.
        public let cpu: String
        /// True when `BATON_ISA` chose the level (any value but unset, empty or `auto`).
        public let forced: Bool
        /// The CPU kernels OpenBLAS (the prefill path's sgemm) picked, e.g. "Cooperlake" or "Haswell", which
        /// `BATON_ISA` does not change: `OPENBLAS_CORETYPE=Haswell` goes with `BATON_ISA=avx2` to emulate an
        /// AVX2-only CPU fully. Nil if the library does not say.
        public let blasCore: String?

        /// "avx2 (forced by BATON_ISA; the CPU runs up to avx512), OpenBLAS core Haswell".
        public var description: String {
            let how = forced ? "forced by BATON_ISA; the CPU runs up to \(cpu)" : "the CPU's best"
            return "\(isa) (\(how)), OpenBLAS core \(blasCore ?? "unknown")"
        }
    }

    /// The selection in force (the same for the whole process).
    public static var selection: Selection {
        Selection(
            isa: String(cString: bk_isa_name(isa)), cpu: String(cString: bk_isa_name(bk_cpu_isa())),
            forced: bk_isa_forced() != 0, blasCore: blasCoreName())
    }

    /// Throws `.invalidArgument` if `BATON_ISA` names no level of this architecture or one the CPU lacks; the
    /// message names the variable, its value, the allowed values and what the CPU runs. The engines call it
    /// before they run anything, and `baton` before any command.
    public static func checkSelection() throws(InferenceError) {
        if let error = bk_isa_error() { throw InferenceError(.invalidArgument, String(cString: error)) }
    }

    private static func blasCoreName() -> String? {
        guard let name = openblas_get_corename() else { return nil }
        let text = String(cString: name).trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? nil : text
    }

    /// Peak int8 multiply-accumulates per second of the instructions the quantized kernels are built on, on
    /// `threads` threads at once (register-only, so no memory or scale work): the ceiling of any quantized
    /// mat-vec here, against which a measured one can be judged. Nil for the scalar kernels. Takes ~0.5 s.
    public static func int8DotPeak(threads: Int) -> Double? {
        guard isa != BK_ISA_SCALAR, threads >= 1 else { return nil }
        let iterations: UInt64 = 4_000_000
        var best = 0.0
        for _ in 0..<3 {
            let started = ContinuousClock.now
            let total = Mutex<UInt64>(0)
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                var sink: Int32 = 0
                let done = bk_int8_dot_burn(isa, iterations, &sink)
                total.withLock { $0 += done }
            }
            let elapsed = started.duration(to: .now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            best = max(best, Double(total.withLock { $0 }) / seconds)
        }
        return best
    }

    /// Fewer rows than this per task are not worth a fork/join.
    static let minimumRowsPerTask = 128

    /// Batched mat-vec: for b in 0..<batch, `output[b*rows + r] = Σ_c W[r, c] * input[b*columns + c]`.
    ///
    /// `input` holds `batch` vectors of `w.columns` floats; `output` receives `batch` vectors of `w.rows`.
    /// For quantized weights the input is first quantized to int8 blocks (exactly as llama.cpp's `quantize_row_q8_0`
    /// / `q8_1`, or `q8_K` for the K-quants), once per call; the weight rows are streamed once for all vectors.
    /// Rows are split over `pool`'s threads in contiguous ranges. Each vector's result is the same
    /// whatever `batch` is. Does not allocate once the pool's scratch has grown to the largest call;
    /// uses `pool`, so it must not run concurrently with another call on the same pool.
    ///
    /// With `interleaved` (a copy of `w`), the quantized product runs the interleaved kernel on the copy.
    /// `sameInput` promises that `input` holds exactly what it held in this pool's previous call (as K and V
    /// read Q's input): if that call quantized it the same way, its quantization is reused.
    public static func matmul(_ w: WeightMatrix, interleaved: InterleavedMatrix? = nil, input: UnsafePointer<Float>,
                              batch: Int, output: UnsafeMutablePointer<Float>, pool: ThreadPool, sameInput: Bool = false) {
        guard batch > 0 else { return }
        let part = Projection(weights: w, interleaved: interleaved, output: output)
        let act = activations(for: w, input: input, batch: batch, pool: pool, sameInput: sameInput)
        let rows = w.rows
        let tasks = taskCount(rows: rows, threads: pool.threadCount, batch: batch)
        pool.parallelFor(tasks) { task in  // one task runs inline
            part.multiply(rowRange(task: task, of: tasks, rows: rows), act: act, batch: batch)
        }
    }

    /// One product of a group that reads the same input: the weights, their interleaved copy (if any), the output.
    struct Projection {
        let weights: WeightMatrix
        let interleaved: InterleavedMatrix?
        let output: UnsafeMutablePointer<Float>

        init(weights: WeightMatrix, interleaved: InterleavedMatrix?, output: UnsafeMutablePointer<Float>) {
            if let interleaved {
                precondition(
                    interleaved.source.base == weights.base && interleaved.source.rows == weights.rows
                        && interleaved.source.type == weights.type,
                    "matmul: the interleaved copy is not a copy of this matrix")
            }
            self.weights = weights
            self.interleaved = interleaved
            self.output = output
        }

        /// Output rows `range` (multiples of 16 apart from the end, as the interleaved copy's groups are) for
        /// every vector. Each result is the same whatever the range, so any split gives identical outputs.
        func multiply(_ range: Range<Int>, act: UnsafeRawPointer, batch: Int) {
            let w = weights
            if let interleaved {
                bk_matmul_x16(isa, w.kernelType, UnsafeRawPointer(interleaved.bytes), Int32(range.lowerBound),
                              Int32(range.upperBound), Int32(w.columns), act, Int32(batch), output, w.rows)
            } else {
                bk_matmul(isa, w.kernelType, w.base, w.rowBytes, Int32(range.lowerBound), Int32(range.upperBound),
                          Int32(w.columns), act, Int32(batch), output, w.rows)
            }
        }
    }

    /// Several products of one input in a single fork/join, for the decode path where a step's fork/joins
    /// cost as much as its smaller products: `parts[i].output = input · parts[i].weightsᵀ`, each exactly as
    /// `matmul` computes it. The input is quantized once per distinct weight type (llama.cpp's Q4_K_M files
    /// mix Q5_0 and Q8_0 in Q/K/V), side by side in the pool's scratch; parts of different row lengths run as
    /// their own `matmul`.
    ///
    /// With `epilogue`, every part must have the same rows: each task covers one row range in all parts and
    /// then calls `epilogue(range)` (SwiGLU right after gate and up, while those rows are in cache); when the
    /// parts cannot share a fork/join the epilogue runs once over all rows at the end.
    static func matmul(
        group parts: UnsafeBufferPointer<Projection>, input: UnsafePointer<Float>, batch: Int, pool: ThreadPool,
        epilogue: ((Range<Int>) -> Void)? = nil
    ) {
        guard batch > 0, let first = parts.first?.weights else { return }
        precondition(
            epilogue == nil || parts.allSatisfy { $0.weights.rows == first.rows },
            "matmul(group:): an epilogue needs parts of equal rows")
        guard parts.allSatisfy({ $0.weights.columns == first.columns }) else {
            for (i, part) in parts.enumerated() {
                matmul(part.weights, interleaved: part.interleaved, input: input, batch: batch, output: part.output,
                       pool: pool, sameInput: i > 0)
            }
            epilogue?(0..<first.rows)
            return
        }
        // acts[i]: what part i's kernel reads.
        var acts = [UnsafeRawPointer](repeating: UnsafeRawPointer(input), count: parts.count)
        if parts.allSatisfy({ $0.weights.kernelType == first.kernelType }) {
            let act = activations(for: first, input: input, batch: batch, pool: pool, sameInput: false)
            for i in acts.indices { acts[i] = act }
        } else {
            var kinds: [bk_type] = []
            for part in parts where part.weights.isQuantized && !kinds.contains(part.weights.kernelType) {
                kinds.append(part.weights.kernelType)
            }
            let stride = bk_act_bytes(Int32(first.columns), Int32(batch)).kernelRoundedUp(to: 64)
            let scratch = pool.scratchBuffer(bytes: max(1, kinds.count) * stride)
            pool.quantizedInput = nil
            for (k, kind) in kinds.enumerated() {
                bk_quantize_act(isa, kind, input, Int32(first.columns), Int32(batch), scratch + k * stride)
            }
            for (i, part) in parts.enumerated() where part.weights.isQuantized {
                acts[i] = UnsafeRawPointer(scratch + kinds.firstIndex(of: part.weights.kernelType)! * stride)
            }
        }
        let threads = pool.threadCount
        if let epilogue {
            let rows = first.rows
            let tasks = taskCount(rows: rows, threads: threads, batch: batch * parts.count)
            acts.withUnsafeBufferPointer { acts in
                pool.parallelFor(tasks) { task in
                    let range = rowRange(task: task, of: tasks, rows: rows)
                    for (i, part) in parts.enumerated() { part.multiply(range, act: acts[i], batch: batch) }
                    epilogue(range)
                }
            }
            return
        }
        var total = 0
        for part in parts { total += taskCount(rows: part.weights.rows, threads: threads, batch: batch) }
        acts.withUnsafeBufferPointer { acts in
            pool.parallelFor(total) { task in
                var task = task
                for (i, part) in parts.enumerated() {
                    let rows = part.weights.rows
                    let tasks = taskCount(rows: rows, threads: threads, batch: batch)
                    if task < tasks {
                        part.multiply(rowRange(task: task, of: tasks, rows: rows), act: acts[i], batch: batch)
                        return
                    }
                    task -= tasks
                }
            }
        }
    }

    /// What the kernels read for `w`: the input itself for float weights, else its int8 blocks in the pool's
    /// scratch, quantized here unless `sameInput` and the scratch already holds exactly this quantization.
    private static func activations(
        for w: WeightMatrix, input: UnsafePointer<Float>, batch: Int, pool: ThreadPool, sameInput: Bool
    ) -> UnsafeRawPointer {
        guard w.isQuantized else { return UnsafeRawPointer(input) }
        let scratch = pool.scratchBuffer(bytes: bk_act_bytes(Int32(w.columns), Int32(batch)))
        let key = ThreadPool.QuantizedInput(
            input: UnsafeRawPointer(input), columns: w.columns, batch: batch, type: w.kernelType.rawValue)
        if !sameInput || pool.quantizedInput != key {
            bk_quantize_act(isa, w.kernelType, input, Int32(w.columns), Int32(batch), scratch)
            pool.quantizedInput = key
        }
        return UnsafeRawPointer(scratch)
    }

    /// Up to four contiguous slices per thread, each at least `minimumRowsPerTask` rows for one vector and
    /// proportionally fewer (down to 32) for a batch, whose rows cost more: threads claim slices as they go, so
    /// a thread that is preempted (a busy machine) holds up at most one small slice, and at batch 8 even the
    /// 192-row K and V projections are shared.
    static func taskCount(rows: Int, threads: Int, batch: Int = 1) -> Int {
        guard threads > 1 else { return 1 }
        return max(1, min(threads * 4, rows / max(32, minimumRowsPerTask / max(1, batch))))
    }

    /// Task `task`'s rows: an even split rounded to multiples of 16 rows (whole cache lines of output).
    static func rowRange(task: Int, of tasks: Int, rows: Int) -> Range<Int> {
        let start = task == 0 ? 0 : min(rows, (rows * task / tasks).kernelRoundedUp(to: 16))
        let end = task == tasks - 1 ? rows : min(rows, (rows * (task + 1) / tasks).kernelRoundedUp(to: 16))
        return start..<end
    }

    /// Rounds `rows` vectors of `w.columns` floats through the int8 blocks the decode kernels quantize them to for
    /// `w` (q8_K for the K-quants, else q8_0) and back, so the f32 prefill path sees the activations the integer
    /// kernels see. `x` and `y` may be the same buffer.
    static func roundActivations(for w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int) {
        if w.type.blockElements == 256 {
            bk_q8k_roundtrip(x, y, Int32(w.columns), Int32(rows))
        } else {
            bk_q8_roundtrip(isa, x, y, Int32(w.columns), Int32(rows))
        }
    }

    /// Dequantizes row `row` (`w.columns` floats) into `into`. `row` must be in `0..<w.rows`.
    public static func dequantizeRow(_ w: WeightMatrix, row: Int, into: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < w.rows, "dequantizeRow: row \(row) outside 0..<\(w.rows)")
        bk_dequantize_row(isa, w.kernelType, w.base + row * w.rowBytes, into, Int32(w.columns))
    }

    /// Dequantizes the whole matrix into `into` (`rows * columns` floats, row-major), rows split over `pool`.
    public static func dequantizeAll(_ w: WeightMatrix, into: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let rows = w.rows
        let tasks = max(1, min(pool.threadCount * 4, rows / 16))
        pool.parallelFor(tasks) { task in
            for r in rowRange(task: task, of: tasks, rows: rows) {
                bk_dequantize_row(isa, w.kernelType, w.base + r * w.rowBytes, into + r * w.columns, Int32(w.columns))
            }
        }
    }

    // MARK: - f16 and vector helpers (count may be 0)

    /// Converts floats to IEEE binary16 bit patterns (round to nearest even; overflow gives infinity).
    public static func convertToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        guard count > 0 else { return }
        bk_convert_f32_to_f16(isa, src, dst, count)
    }

    /// Converts IEEE binary16 bit patterns to floats (exact).
    public static func convertFromF16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        bk_convert_f16_to_f32(isa, src, dst, count)
    }

    /// Σ a[i] * b[i] with `b` in binary16.
    public static func dotF16(_ a: UnsafePointer<Float>, _ b: UnsafePointer<UInt16>, count: Int) -> Float {
        guard count > 0 else { return 0 }
        return bk_dot_f16(isa, a, b, count)
    }

    /// y += alpha * x (x in binary16).
    public static func axpyF16(_ alpha: Float, _ x: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        bk_axpy_f16(isa, alpha, x, y, count)
    }

    /// Σ a[i] * b[i].
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        guard count > 0 else { return 0 }
        return bk_dot_f32(isa, a, b, count)
    }

    /// y += alpha * x.
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        bk_axpy_f32(isa, alpha, x, y, count)
    }
}
