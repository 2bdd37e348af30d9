/// The ggml tensor element types this reader accepts, with their block layouts.
///
/// Quantized types store a row as consecutive blocks of `blockElements` values each; a row's length
/// (`dimensions[0]`) must be a multiple of `blockElements`. All multi-byte fields are little-endian, and
/// `f16` below is IEEE 754 binary16. Block layouts (byte offsets inside one block):
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
/// - ``q8_0``: 32 elements, 34 bytes (ggml `block_q8_0`):
///   ```
///   0..<2   f16 d        scale
///   2..<34  Int8 qs[32]  qs[j] = q of element j
///   value = q * d
///   ```
public enum GGMLType: Sendable, Equatable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16, q4_0, q4_1, q8_0

    /// Maps a ggml type id from a file; nil for types this reader does not support.
    public init?(ggmlID: UInt32) {
        switch ggmlID {
        case 0: self = .f32
        case 1: self = .f16
        case 2: self = .q4_0
        case 3: self = .q4_1
        case 8: self = .q8_0
        case 30: self = .bf16
        default: return nil
        }
    }

    /// The type's id in ggml's `enum ggml_type`, as stored in GGUF tensor infos.
    public var ggmlID: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 8
        case .bf16: 30
        }
    }

    /// Elements per block (1 for the plain float types).
    public var blockElements: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q8_0: 32
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q8_0: 34
        }
    }

    /// ggml's name for the type: "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0".
    public var name: String { Self.ggmlName(of: ggmlID) ?? "type \(ggmlID)" }

    public var description: String { name }

    /// ggml's name for any ggml type id, supported here or not (e.g. 14 → "Q6_K"); nil for unknown ids.
    public static func ggmlName(of ggmlID: UInt32) -> String? {
        let id = Int(ggmlID)
        guard id < ggmlNames.count, let name = ggmlNames[id] else { return nil }
        return name
    }

    /// ggml's `enum ggml_type` by id; nil marks ids that ggml removed (Q4_2, Q4_3, the repacked Q4_0_x_y...).
    private static let ggmlNames: [String?] = [
        "F32", "F16", "Q4_0", "Q4_1", nil, nil, "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
        "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
        "BF16", nil, nil, nil, "TQ1_0", "TQ2_0", nil, nil, nil, "MXFP4",
    ]
}
