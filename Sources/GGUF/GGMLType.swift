/// The ggml tensor element types, with their block sizes and, for the ones Baton computes with, their block
/// layouts.
///
/// The reader accepts every type of ggml's `enum ggml_type` (it only needs a type's block size to place the
/// tensor in the file), so `baton inspect` can show any GGUF file; ``isSupported`` says whether Baton's kernels
/// can compute with it. Ids ggml does not define (or removed) are refused, as their size is unknown.
///
/// Quantized types store a row as consecutive blocks of `blockElements` values each; a row's length
/// (`dimensions[0]`) must be a multiple of `blockElements`. All multi-byte fields are little-endian, `f16` is
/// IEEE 754 binary16. Block layouts of the supported types (byte offsets inside one block; the K-quants' bit
/// packing is documented where it is decoded, in `Sources/CKernels/kquants.c`):
///
/// - ``f32``: 1 element, 4 bytes: IEEE 754 binary32.
/// - ``f16``: 1 element, 2 bytes: IEEE 754 binary16.
/// - ``bf16``: 1 element, 2 bytes: the upper 16 bits of a binary32 (`Float(bitPattern: UInt32(b) << 16)`).
/// - ``q4_0``: 32 elements, 18 bytes (ggml `block_q4_0`):
///   ```
///   0..<2   f16 d        scale
///   2..<18  UInt8 qs[16] qs[j] & 0x0F = q of element j, qs[j] >> 4 = q of element j + 16  (j in 0..<16)
///   value = (q - 8) * d                 q in 0...15
///   ```
/// - ``q4_1``: 32 elements, 20 bytes (ggml `block_q4_1`):
///   ```
///   0..<2   f16 d        scale
///   2..<4   f16 m        minimum
///   4..<20  UInt8 qs[16] nibbles laid out as in Q4_0 (low nibbles: elements 0..<16, high: 16..<32)
///   value = q * d + m                   q in 0...15
///   ```
/// - ``q5_0``: 32 elements, 22 bytes (ggml `block_q5_0`):
///   ```
///   0..<2   f16 d        scale
///   2..<6   u32 qh       bit j = fifth bit of element j
///   6..<22  UInt8 qs[16] low four bits, laid out as in Q4_0
///   value = (q - 16) * d                q = low | (bit << 4) in 0...31
///   ```
/// - ``q5_1``: 32 elements, 24 bytes (ggml `block_q5_1`): f16 d, f16 m, then qh and qs as Q5_0;
///   value = q * d + m.
/// - ``q8_0``: 32 elements, 34 bytes (ggml `block_q8_0`):
///   ```
///   0..<2   f16 d        scale
///   2..<34  Int8 qs[32]  qs[j] = q of element j
///   value = q * d
///   ```
/// - ``q2_K``: 256 elements, 84 bytes: scales[16] (4-bit scale | 4-bit min per 16 elements), qs[64] (2 bits),
///   f16 d, f16 dmin; value = d·scale·q − dmin·min.
/// - ``q3_K``: 256 elements, 110 bytes: hmask[32] (third bit), qs[64] (low 2 bits), scales[12] (sixteen 6-bit
///   scales), f16 d; value = d·(scale − 32)·(q − 4·(1 − high bit)).
/// - ``q4_K``: 256 elements, 144 bytes: f16 d, f16 dmin, scales[12] (eight 6-bit scales and mins), qs[128];
///   value = d·scale·q − dmin·min per 32 elements.
/// - ``q5_K``: 256 elements, 176 bytes: as Q4_K with qh[32] (fifth bit) before qs[128].
/// - ``q6_K``: 256 elements, 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits), Int8 scales[16], f16 d;
///   value = d·scale·(q − 32) per 16 elements.
public enum GGMLType: Sendable, Equatable, Hashable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0
    case q2_K, q3_K, q4_K, q5_K, q6_K
    // Types the reader sizes and names but Baton does not compute with.
    case q8_1, q8_K
    case iq2_xxs, iq2_xs, iq3_xxs, iq1_s, iq4_nl, iq3_s, iq2_s, iq4_xs, iq1_m
    case i8, i16, i32, i64, f64
    case tq1_0, tq2_0, mxfp4, nvfp4, q1_0, q2_0

    /// Maps a ggml type id from a file; nil for ids ggml does not define (or removed).
    public init?(ggmlID: UInt32) {
        guard let type = Self.byID[ggmlID] else { return nil }
        self = type
    }

    private static let byID: [UInt32: GGMLType] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.ggmlID, $0) })

    /// The type's id in ggml's `enum ggml_type`, as stored in GGUF tensor infos.
    public var ggmlID: UInt32 { Self.traits(self).id }

    /// Elements per block (1 for the plain float and integer types).
    public var blockElements: Int { Self.traits(self).elements }

    /// Bytes per block.
    public var blockBytes: Int { Self.traits(self).bytes }

    /// ggml's name for the type: "F32", "Q4_K", "IQ4_NL", ...
    public var name: String { Self.traits(self).name }

    public var description: String { name }

    /// Whether Baton's kernels compute with this type (prefill dequantization and decode mat-vec). Files with other
    /// types can be inspected, not run.
    public var isSupported: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: true
        default: false
        }
    }

    /// The supported types, in ggml id order (for messages).
    public static var supportedTypes: [GGMLType] { allCases.filter(\.isSupported).sorted { $0.ggmlID < $1.ggmlID } }

    /// ggml's name for any ggml type id (e.g. 14 → "Q6_K"); nil for ids ggml does not define.
    public static func ggmlName(of ggmlID: UInt32) -> String? { GGMLType(ggmlID: ggmlID)?.name }

    /// ggml's `type_traits`: id, block elements, block bytes, name (`ggml/src/ggml.c`, `ggml-common.h`).
    private static func traits(_ type: GGMLType) -> (id: UInt32, elements: Int, bytes: Int, name: String) {
        switch type {
        case .f32: (0, 1, 4, "F32")
        case .f16: (1, 1, 2, "F16")
        case .q4_0: (2, 32, 18, "Q4_0")
        case .q4_1: (3, 32, 20, "Q4_1")
        case .q5_0: (6, 32, 22, "Q5_0")
        case .q5_1: (7, 32, 24, "Q5_1")
        case .q8_0: (8, 32, 34, "Q8_0")
        case .q8_1: (9, 32, 36, "Q8_1")
        case .q2_K: (10, 256, 84, "Q2_K")
        case .q3_K: (11, 256, 110, "Q3_K")
        case .q4_K: (12, 256, 144, "Q4_K")
        case .q5_K: (13, 256, 176, "Q5_K")
        case .q6_K: (14, 256, 210, "Q6_K")
        case .q8_K: (15, 256, 292, "Q8_K")
        case .iq2_xxs: (16, 256, 66, "IQ2_XXS")
        case .iq2_xs: (17, 256, 74, "IQ2_XS")
        case .iq3_xxs: (18, 256, 98, "IQ3_XXS")
        case .iq1_s: (19, 256, 50, "IQ1_S")
        case .iq4_nl: (20, 32, 18, "IQ4_NL")
        case .iq3_s: (21, 256, 110, "IQ3_S")
        case .iq2_s: (22, 256, 82, "IQ2_S")
        case .iq4_xs: (23, 256, 136, "IQ4_XS")
        case .i8: (24, 1, 1, "I8")
        case .i16: (25, 1, 2, "I16")
        case .i32: (26, 1, 4, "I32")
        case .i64: (27, 1, 8, "I64")
        case .f64: (28, 1, 8, "F64")
        case .iq1_m: (29, 256, 56, "IQ1_M")
        case .bf16: (30, 1, 2, "BF16")
        case .tq1_0: (34, 256, 54, "TQ1_0")
        case .tq2_0: (35, 256, 66, "TQ2_0")
        case .mxfp4: (39, 32, 17, "MXFP4")
        case .nvfp4: (40, 64, 36, "NVFP4")
        case .q1_0: (41, 128, 18, "Q1_0")
        case .q2_0: (42, 64, 18, "Q2_0")
        }
    }
}
