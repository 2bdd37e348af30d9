import CKernels
import GGUF
import Testing
@testable import Inference

/// SplitMix64: a tiny seeded generator so every run tests the same inputs.
struct KernelTestRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float() * scale } }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

/// This architecture's kernel levels, lowest first (what `BATON_ISA` may name here).
#if arch(x86_64)
let architectureISAs: [bk_isa] = [BK_ISA_SCALAR, BK_ISA_AVX2, BK_ISA_AVX512]
#elseif arch(arm64)
let architectureISAs: [bk_isa] = [BK_ISA_SCALAR, BK_ISA_NEON, BK_ISA_NEON_DOTPROD]
#else
let architectureISAs: [bk_isa] = [BK_ISA_SCALAR]
#endif

/// Why the kernels of `isa` (one of ``architectureISAs``) do not run here, or nil when they do.
func kernelSkipReason(_ isa: bk_isa) -> String? {
    guard bk_isa_supported(isa) == 0 else { return nil }
    let cpu = bk_cpu_isa()
    if let wanted = architectureISAs.firstIndex(of: isa), let has = architectureISAs.firstIndex(of: cpu), wanted <= has {
        return "BATON_ISA caps the kernels at \(isaName(bk_best_isa())) (the CPU runs up to \(isaName(cpu)))"
    }
    return "this CPU runs only up to \(isaName(cpu))"
}

/// The ISAs a kernel test covers: this architecture's levels that run here (all the CPU has, or under `BATON_ISA`
/// those at or below the level it forces), lowest first. Prints each level left out and why, so a run on a
/// smaller CPU (or a forced one) says what it did not test; a kernel test calls it once.
func coveredISAs(_ function: String = #function) -> [bk_isa] {
    let test = Test.current?.displayName ?? function
    for isa in architectureISAs {
        if let reason = kernelSkipReason(isa) {
            print("◇ \"\(test)\" skips the \(isaName(isa)) kernels: \(reason)")
        }
    }
    return architectureISAs.filter { bk_isa_supported($0) != 0 }
}

/// Random weights of `type` in GGUF block layout with realistic scales (|d| ≤ 0.02, |m| ≤ 0.1); the
/// quants themselves are random bytes (all nibble values, Q8_0 including -128).
func randomKernelWeights(_ type: GGMLType, rows: Int, columns: Int, random: inout KernelTestRandom) -> [UInt8] {
    let rowBytes = columns / type.blockElements * type.blockBytes
    var bytes = (0..<(rows * rowBytes)).map { _ in random.byte() }
    func putF16(_ value: Float, at offset: Int) {
        let h = bk_f32_to_f16(value)
        bytes[offset] = UInt8(h & 0xFF)
        bytes[offset + 1] = UInt8(h >> 8)
    }
    switch type {
    case .q4_0, .q4_1, .q8_0:
        for block in 0..<(rows * columns / 32) {
            let offset = block * type.blockBytes
            putF16(random.float() * 0.02, at: offset)
            if type == .q4_1 { putF16(random.float() * 0.1, at: offset + 2) }
        }
    case .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
        // Every f16 field of the block (scale, and min or dmin), at the offsets kquants.c documents; the K-quants'
        // super-scales multiply sub-block scales of up to 63 (127 for Q6_K), so they are smaller.
        let fields: [Int] = switch type {
        case .q5_0: [0]
        case .q2_K: [80, 82]
        case .q3_K: [108]
        case .q6_K: [208]
        default: [0, 2]
        }
        let scale: Float = type.blockElements == 256 ? 0.001 : 0.02
        for block in 0..<(rows * columns / type.blockElements) {
            for field in fields { putF16(random.float() * scale, at: block * type.blockBytes + field) }
        }
    case .f32:
        for i in 0..<(rows * columns) {
            let bits = (random.float() * 0.5).bitPattern
            for k in 0..<4 { bytes[4 * i + k] = UInt8(truncatingIfNeeded: bits >> (8 * UInt32(k))) }
        }
    case .f16:
        for i in 0..<(rows * columns) { putF16(random.float() * 0.5, at: 2 * i) }
    case .bf16:
        for i in 0..<(rows * columns) {
            let bits = (random.float() * 0.5).bitPattern >> 16
            bytes[2 * i] = UInt8(bits & 0xFF)
            bytes[2 * i + 1] = UInt8(bits >> 8)
        }
    default:
        preconditionFailure("no random weights for \(type)")
    }
    return bytes
}

/// Owns 64-byte aligned quantized-activation scratch for tests.
final class KernelActivationScratch {
    let pointer: UnsafeMutableRawPointer
    let columns: Int
    init(columns: Int, batch: Int) {
        self.columns = columns
        pointer = .allocate(byteCount: bk_act_bytes(Int32(columns), Int32(batch)), alignment: 64)
    }
    /// `batch` vectors of `x` quantized by the scalar kernel for weights of `type`.
    convenience init(quantizing x: [Float], for type: GGMLType, columns: Int, batch: Int) {
        self.init(columns: columns, batch: batch)
        bk_quantize_act(BK_ISA_SCALAR, bk_type(rawValue: type.ggmlID), x, Int32(columns), Int32(batch), pointer)
    }

    deinit { pointer.deallocate() }

    var vectorStride: Int { bk_act_bytes(Int32(columns), 1) }

    func block(vector: Int, block: Int) -> (qs: [Int8], d: Float, s: Float, sum: Int32) {
        var qs = [Int8](repeating: 0, count: 32)
        var d: Float = 0, s: Float = 0, sum: Int32 = 0
        qs.withUnsafeMutableBufferPointer { q in
            bk_act_block(pointer, Int32(columns), Int32(vector), Int32(block), q.baseAddress, &d, &s, &sum)
        }
        return (qs, d, s, sum)
    }

    /// The activation vector as the kernels see it: q · d.
    func dequantized(vector: Int) -> [Float] {
        var out: [Float] = []
        for b in 0..<(columns / 32) {
            let blk = block(vector: vector, block: b)
            out += blk.qs.map { Float($0) * blk.d }
        }
        return out
    }
}

/// Row `row` of `w` as floats (scalar dequantization, checked separately).
func kernelDequantizedRow(_ w: WeightMatrix, _ row: Int) -> [Float] {
    var out = [Float](repeating: 0, count: w.columns)
    out.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(w, row: row, into: $0.baseAddress!) }
    return out
}

/// The level's `BATON_ISA` spelling, for test messages.
func isaName(_ isa: bk_isa) -> String { String(cString: bk_isa_name(isa)) }
