import CKernels
import GGUF

/// A read-only view of a 2-D weight tensor in GGUF layout: `rows` rows of `columns` elements, each row a
/// run of blocks of `type` (see ``GGMLType`` for the block layouts).
///
/// `base` usually points into the model's memory-mapped file; the view does not own it, so whoever created
/// the view keeps the mapping alive while the view is in use. Decode kernels read the blocks in place.
public struct WeightMatrix: @unchecked Sendable {
    /// Element type: one of `GGMLType.supportedTypes` (quantized types run integer kernels on int8 activations;
    /// `.f16`, `.bf16`, `.f32` run f32 kernels).
    public let type: GGMLType
    public let rows: Int
    /// Elements per row; a multiple of the type's block size (32, or 256 for the K-quants).
    public let columns: Int
    /// Row 0; row `r` starts at `base + r * rowBytes`.
    public let base: UnsafeRawPointer

    /// Largest row length the kernels accept (their indices are 32-bit).
    public static let maximumColumns = 1 << 24

    /// Checks the shape against the type's block size; throws `.invalidArgument` naming the problem.
    public init(type: GGMLType, rows: Int, columns: Int, base: UnsafeRawPointer) throws(InferenceError) {
        guard type.isSupported else {
            throw InferenceError(
                .unsupportedModel,
                "tensor type \(type) has no kernels in Baton (supported: "
                    + GGMLType.supportedTypes.map(\.name).joined(separator: ", ") + ")")
        }
        guard rows > 0, rows <= Int(Int32.max) else {
            throw InferenceError(.invalidArgument, "weight matrix needs 1...\(Int32.max) rows, got \(rows)")
        }
        guard columns > 0, columns <= Self.maximumColumns else {
            throw InferenceError(.invalidArgument, "weight matrix needs 1...\(Self.maximumColumns) columns, got \(columns)")
        }
        guard columns % type.blockElements == 0 else {
            throw InferenceError(
                .invalidArgument,
                "\(type) rows hold whole blocks of \(type.blockElements) elements; \(columns) columns is not a multiple")
        }
        let (total, overflow) = (columns / type.blockElements * type.blockBytes).multipliedReportingOverflow(by: rows)
        guard !overflow, total <= Int.max / 2 else {
            throw InferenceError(.invalidArgument, "weight matrix \(rows)×\(columns) of \(type) is too large")
        }
        self.type = type
        self.rows = rows
        self.columns = columns
        self.base = base
    }

    /// Bytes of one row.
    public var rowBytes: Int { columns / type.blockElements * type.blockBytes }

    /// Bytes of the whole matrix.
    public var byteCount: Int { rowBytes * rows }

    /// True for the block-quantized types, whose mat-vec quantizes the input to int8 first.
    var isQuantized: Bool { type.blockElements > 1 }

    var kernelType: bk_type { bk_type(rawValue: type.ggmlID) }
}
