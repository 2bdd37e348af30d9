import CKernels
import GGUF
import Testing
@testable import Inference

/// The Q5_0, Q5_1 and K-quant decode kernels: q8_K activations as ggml makes them, the scalar twins against a
/// dequantize-then-dot reference (dequantization itself is checked against gguf-py), every SIMD variant and the
/// interleaved copies against the twins, and batch invariance.
@Suite("Q5 and K-quant kernels")
struct KQuantKernelTests {
    static let types: [GGMLType] = [.q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    /// (rows, columns) per block size: the default model's and Gemma 3's shapes, odd row counts, one block.
    static func shapes(_ type: GGMLType) -> [(Int, Int)] {
        type.blockElements == 256
            ? [(1536 / 4, 1536), (640, 2048), (37, 256), (5, 768), (48, 1024)]
            : [(576, 1536), (1536 / 4, 576), (37, 160), (5, 32), (9, 800)]
    }

    /// ggml's quantize_row_q8_K_ref, written out: x_max the first element of largest magnitude, iscale = −127/x_max,
    /// q = min(127, nearest_int(iscale·x)) with nearest_int's f32 adder, d = 1/iscale, sums per 16.
    static func referenceQ8K(_ x: ArraySlice<Float>) -> (qs: [Int8], d: Float, bsums: [Int16]) {
        var amax: Float = 0, max: Float = 0
        for v in x where abs(v) > amax { amax = abs(v); max = v }
        guard amax != 0 else { return ([Int8](repeating: 0, count: 256), 0, [Int16](repeating: 0, count: 16)) }
        let iscale = -127 / max
        let qs = x.map { v -> Int8 in
            let bits = Int32(bitPattern: (iscale * v + 12_582_912).bitPattern)
            return Int8(Swift.min(127, (bits & 0x007f_ffff) - 0x0040_0000))
        }
        let bsums = (0..<16).map { g in Int16(qs[(16 * g)..<(16 * g + 16)].reduce(0) { $0 + Int($1) }) }
        return (qs, 1 / iscale, bsums)
    }

    static func kBlock(_ scratch: KernelActivationScratch, vector: Int, block: Int) -> (qs: [Int8], d: Float, bsums: [Int16]) {
        var qs = [Int8](repeating: 0, count: 256), bsums = [Int16](repeating: 0, count: 16)
        var d: Float = 0
        qs.withUnsafeMutableBufferPointer { q in
            bsums.withUnsafeMutableBufferPointer { s in
                bk_act_k_block(scratch.pointer, Int32(scratch.columns), Int32(vector), Int32(block), q.baseAddress, &d, s.baseAddress)
            }
        }
        return (qs, d, bsums)
    }

    /// The activations as the kernels for `type` see them: q · d per block.
    static func dequantizedActivations(_ scratch: KernelActivationScratch, type: GGMLType, vector: Int) -> [Float] {
        guard type.blockElements == 256 else { return scratch.dequantized(vector: vector) }
        return (0..<(scratch.columns / 256)).flatMap { b in
            let blk = kBlock(scratch, vector: vector, block: b)
            return blk.qs.map { Float($0) * blk.d }
        }
    }

    @Test("q8_K activations are ggml's quantize_row_q8_K on every ISA")
    func q8KMatchesGgml() {
        for isa in coveredISAs() { q8KMatchesGgml(isa: isa) }
    }

    func q8KMatchesGgml(isa: bk_isa) {
        var random = KernelTestRandom(seed: 21)
        let columns = 768, batch = 2
        var x = random.floats(columns * batch, scale: 3)
        for i in 256..<512 { x[i] = 0 }  // an all-zero super-block: d = 0, q = 0
        x[5] = -7; x[9] = 7  // a tie on magnitude: the first one is x_max
        let scratch = KernelActivationScratch(columns: columns, batch: batch)
        bk_quantize_act(isa, BK_TYPE_Q4_K, x, Int32(columns), Int32(batch), scratch.pointer)
        for v in 0..<batch {
            for b in 0..<(columns / 256) {
                let start = v * columns + 256 * b
                let want = Self.referenceQ8K(x[start..<(start + 256)])
                let got = Self.kBlock(scratch, vector: v, block: b)
                #expect(got.qs == want.qs && got.d == want.d && got.bsums == want.bsums, "vector \(v) block \(b)")
            }
        }
        // x_max is −7 (the first of ±7), so iscale = −127/−7 > 0 and d > 0; +7 first would flip both signs.
        let tie = Self.kBlock(scratch, vector: 0, block: 0)
        #expect(tie.d > 0 && tie.qs[5] == -127 && tie.qs[9] == 127)
        // The prefill path's round trip rounds exactly as the decode path quantizes.
        var y = [Float](repeating: .nan, count: columns * batch)
        bk_q8k_roundtrip(x, &y, Int32(columns), Int32(batch))
        for v in 0..<batch {
            #expect(Array(y[(v * columns)..<((v + 1) * columns)]) == Self.dequantizedActivations(scratch, type: .q4_K, vector: v))
        }
    }

    @Test("the scalar twins equal a dequantize-then-dot reference", arguments: types)
    func scalarTwinMatchesReference(type: GGMLType) throws {
        var random = KernelTestRandom(seed: 22)
        for (rows, columns) in Self.shapes(type).suffix(3) {
            let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
            let x = random.floats(columns, scale: 4)
            let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: 1)
            let xq = Self.dequantizedActivations(scratch, type: type, vector: 0)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                for r in 0..<rows {
                    let got = bk_kq_dot_scalar(w.kernelType, w.base + r * w.rowBytes, scratch.pointer, Int32(columns))
                    let wr = kernelDequantizedRow(w, r)
                    var want = 0.0, magnitude = 0.0, sError = 0.0
                    for c in 0..<columns {
                        want += Double(wr[c]) * Double(xq[c])
                        magnitude += abs(Double(wr[c]) * Double(xq[c]))
                    }
                    if type == .q5_1 {
                        // llama.cpp's q8_1 s is f16(d·Σq) with d unrounded: within two f16 roundings of d̂·Σq.
                        for b in 0..<(columns / 32) {
                            let m = Float(Float16(bitPattern: (w.base + r * w.rowBytes + b * 24 + 2).loadUnaligned(as: UInt16.self)))
                            sError += abs(Double(m) * Double(scratch.block(vector: 0, block: b).s)) * 2e-3
                        }
                    }
                    #expect(abs(Double(got) - want) <= 1e-5 * magnitude + sError, "\(type) \(rows)×\(columns) row \(r): \(got) vs \(want)")
                }
            }
        }
    }

    /// Runs `bk_matmul` (or the interleaved kernel on a packed copy) for all rows and vectors.
    static func run(_ isa: bk_isa, _ w: WeightMatrix, scratch: KernelActivationScratch, batch: Int, interleaved: Bool = false) -> [Float] {
        var out = [Float](repeating: .nan, count: w.rows * batch)
        out.withUnsafeMutableBufferPointer { o in
            if interleaved {
                let bytes = bk_x16_bytes(w.kernelType, Int32(w.rows), Int32(w.columns))
                let packed = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { packed.deallocate() }
                _ = bk_x16_pack(w.kernelType, w.base, w.rowBytes, Int32(w.rows), Int32(w.columns), packed)
                bk_matmul_x16(isa, w.kernelType, packed, 0, Int32(w.rows), Int32(w.columns), scratch.pointer, Int32(batch), o.baseAddress, w.rows)
            } else {
                bk_matmul(isa, w.kernelType, w.base, w.rowBytes, 0, Int32(w.rows), Int32(w.columns), scratch.pointer,
                          Int32(batch), o.baseAddress, w.rows)
            }
        }
        return out
    }

    /// Each result within 1e-5 of the row's absolute terms of the scalar twin's: only the order of f32 additions
    /// (and the int32 → f32 conversion of partial sums) differs.
    static func expectNear(_ got: [Float], _ scalar: [Float], _ w: WeightMatrix, scratch: KernelActivationScratch, batch: Int, what: String) {
        for v in 0..<batch {
            let xq = dequantizedActivations(scratch, type: w.type, vector: v)
            for r in 0..<w.rows {
                let wr = kernelDequantizedRow(w, r)
                var magnitude: Float = 0
                for c in 0..<w.columns { magnitude += abs(wr[c] * xq[c]) }
                let i = v * w.rows + r
                #expect(abs(got[i] - scalar[i]) <= 1e-5 * magnitude + 1e-30, "\(what) vector \(v) row \(r): \(got[i]) vs \(scalar[i])")
            }
        }
    }

    @Test("every SIMD mat-vec variant matches its scalar twin", arguments: types)
    func simdMatchesScalar(type: GGMLType) throws {
        var random = KernelTestRandom(seed: 23)
        let isas = coveredISAs()
        for (rows, columns) in Self.shapes(type) {
            let batch = rows * columns > 100_000 ? 2 : 8
            let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
            let x = random.floats(columns * batch, scale: 2)
            let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: batch)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                let scalar = Self.run(BK_ISA_SCALAR, w, scratch: scratch, batch: batch)
                for isa in isas where isa != BK_ISA_SCALAR {
                    Self.expectNear(Self.run(isa, w, scratch: scratch, batch: batch), scalar, w, scratch: scratch, batch: batch,
                                    what: "\(type) \(rows)×\(columns) ISA \(isa.rawValue)")
                }
                if bk_x16_bytes(w.kernelType, Int32(rows), Int32(columns)) > 0 {
                    for isa in isas {
                        Self.expectNear(Self.run(isa, w, scratch: scratch, batch: batch, interleaved: true), scalar, w,
                                        scratch: scratch, batch: batch, what: "\(type) \(rows)×\(columns) interleaved ISA \(isa.rawValue)")
                    }
                }
            }
        }
    }

    @Test("batching never changes a vector's result, on any ISA", arguments: types)
    func batchInvariance(type: GGMLType) throws {
        var random = KernelTestRandom(seed: 24)
        let rows = 48, columns = type.blockElements == 256 ? 512 : 160, batch = 11
        let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
        let x = random.floats(columns * batch)
        let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: batch)
        let stride = type.blockElements == 256 ? Self.kStride(columns) : scratch.vectorStride
        let isas = coveredISAs()
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
            for isa in isas {
                for interleaved in [false, true] where !interleaved || bk_x16_bytes(w.kernelType, Int32(rows), Int32(columns)) > 0 {
                    let all = Self.run(isa, w, scratch: scratch, batch: batch, interleaved: interleaved)
                    for v in 0..<batch {
                        let one = KernelActivationScratch(columns: columns, batch: 1)
                        one.pointer.copyMemory(from: scratch.pointer + v * stride, byteCount: stride)
                        #expect(Array(all[(v * rows)..<((v + 1) * rows)]) == Self.run(isa, w, scratch: one, batch: 1, interleaved: interleaved),
                                "\(type) ISA \(isa.rawValue) interleaved \(interleaved) vector \(v)")
                    }
                }
            }
        }
    }

    /// Bytes between vectors in q8_K scratch: 256 quants, a scale and sixteen sums per super-block, 64-aligned.
    static func kStride(_ columns: Int) -> Int { (columns + columns / 256 * 36 + 63) / 64 * 64 }
}
