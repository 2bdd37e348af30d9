import CKernels
import Foundation

/// A quantized weight matrix copied sixteen rows interleaved (`bk_x16_pack`): the same quantized bytes as the
/// GGUF blocks, ordered so that the batched decode kernel holds one row per int32 lane. That kernel needs no
/// byte regrouping, per-block lane reduction or tail handling, and runs batch-8 mat-vec at 1.6–2.3× the
/// in-place kernel (and batch 1 from cache at ~3×).
///
/// Built only where that kernel runs (AVX-512 VNNI) and only for the decode path. The copy lives in its own
/// anonymous mapping (huge pages where allowed). For a model mapped from a file, ``InterleavedWeights`` hands
/// the file pages the copies were made from back to the page cache, so the copies replace them in the
/// process's resident memory instead of adding to it.
public final class InterleavedMatrix: @unchecked Sendable {
    public let source: WeightMatrix
    let bytes: UnsafeMutableRawPointer
    let byteCount: Int

    /// Nil where the interleaved kernel does not apply: a type other than Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K or Q6_K (the
    /// types of llama.cpp's Q4_K_M files), rows not a multiple of 16, or a CPU without AVX-512 VNNI (there the
    /// in-place kernels are the fast ones).
    public init?(_ w: WeightMatrix) {
        guard Kernels.isa == BK_ISA_AVX512 else { return nil }
        let count = bk_x16_bytes(w.kernelType, Int32(w.rows), Int32(w.columns))
        guard count > 0 else { return nil }
        guard let address = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              address != MAP_FAILED
        else { return nil }
        _ = madvise(address, count, MADV_HUGEPAGE)
        guard bk_x16_pack(w.kernelType, w.base, w.rowBytes, Int32(w.rows), Int32(w.columns), address) == 0 else {
            munmap(address, count)
            return nil
        }
        source = w
        bytes = address
        byteCount = count
    }

    deinit { munmap(bytes, byteCount) }

    /// Drops the whole pages of `w` from this process. Only for a read-only file mapping: the pages stay in the
    /// page cache and fault back in if read again (as the tied embedding's rows are), whereas anonymous memory
    /// would read back as zeros.
    static func releaseFilePages(of w: WeightMatrix) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: w.base) + page - 1) / page * page
        let end = (Int(bitPattern: w.base) + w.byteCount) / page * page
        guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(pointer, end - start, MADV_DONTNEED)
    }
}

/// The decode path's interleaved copies of one model's matrices (nil entries run the in-place kernels).
public struct InterleavedWeights: Sendable {
    /// `[layer][LayerProjection.rawValue]`.
    public let layers: [[InterleavedMatrix?]]
    public let output: InterleavedMatrix?

    /// `fileMapped`: the weights point into a read-only file mapping, so the copied pages may be released.
    init(_ weights: ModelWeights, fileMapped: Bool) {
        layers = weights.layers.map { layer in layer.projections.map { InterleavedMatrix($0) } }
        output = InterleavedMatrix(weights.output)
        guard fileMapped else { return }
        for matrix in layers.joined() + [output] {
            if let matrix { InterleavedMatrix.releaseFilePages(of: matrix.source) }
        }
    }
}
