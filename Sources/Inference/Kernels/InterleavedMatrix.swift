import CKernels
import Foundation

/// A quantized weight matrix copied sixteen rows interleaved (`bk_x16_pack`): the same quantized bytes as the
/// GGUF blocks, ordered so that the batched decode kernel holds one row per int32 lane. That kernel needs no
/// byte regrouping, per-block lane reduction or tail handling, and runs batch-8 mat-vec at 1.6–2.3× the
/// in-place kernel on AVX-512 and 2.0–2.2× on AVX2 (and batch 1 from cache at ~3× on both).
///
/// Built only where an interleaved kernel beats the in-place one (`bk_x16_preferred`: AVX-512 VNNI and AVX2) and
/// only for the decode path. The copy lives in its own anonymous mapping (huge pages where allowed). For a model mapped from a file, ``InterleavedWeights`` hands
/// the file pages the copies were made from back to the page cache, so the copies replace them in the
/// process's resident memory instead of adding to it.
public final class InterleavedMatrix: @unchecked Sendable {
    public let source: WeightMatrix
    let bytes: UnsafeMutableRawPointer
    let byteCount: Int

    /// Nil where the interleaved kernel does not apply: a type without an interleaved layout (Q4_0, Q4_1, Q8_0;
    /// Q5_0, Q5_1, Q4_K and Q6_K, the types of llama.cpp's Q4_K_M files), rows not a multiple of 16, or kernels
    /// (`Kernels.isa`) without a SIMD interleaved variant for the type (there the in-place ones are faster).
    public init?(_ w: WeightMatrix) {
        guard bk_x16_preferred(Kernels.isa, w.kernelType) != 0 else { return nil }
        let count = bk_x16_bytes(w.kernelType, Int32(w.rows), Int32(w.columns))
        guard count > 0 else { return nil }
        guard let address = PageMemory.mapAnonymous(bytes: count) else { return nil }
        guard bk_x16_pack(w.kernelType, w.base, w.rowBytes, Int32(w.rows), Int32(w.columns), address) == 0 else {
            munmap(address, count)
            return nil
        }
        source = w
        bytes = address
        byteCount = count
    }

    deinit { munmap(bytes, byteCount) }
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
            if let matrix { PageMemory.releaseFilePages(matrix.source.base, byteCount: matrix.source.byteCount) }
        }
    }
}
