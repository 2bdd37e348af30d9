import CKernels
import GGUF
import Testing
@testable import Inference

@Suite("Quantized kernels")
struct QuantizedKernelTests {
    /// (rows, columns): the model's shapes, odd row counts and odd block counts, and rows of whole groups of
    /// 16 blocks with and without an odd tail (the AVX-512 Q4_1 kernel's hexadecets).
    static let shapes: [(Int, Int)] = [(576, 1536), (1536, 576), (37, 160), (5, 32), (19, 96), (7, 800), (9, 1024)]

    /// llama.cpp's x86 quantize_row_q8_1, written out: d = amax/127 kept as f16, q = x·(127/amax) rounded
    /// half to even, s = f16(d·Σq).
    static func referenceQuantize(_ x: ArraySlice<Float>) -> (qs: [Int8], d: Float, s: Float, sum: Int32) {
        let amax = x.map { abs($0) }.max() ?? 0
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        let qs = x.map { Int8(($0 * id).rounded(.toNearestOrEven)) }
        let sum = qs.reduce(Int32(0)) { $0 + Int32($1) }
        return (qs, Float(Float16(d)), Float(Float16(d * Float(sum))), sum)
    }

    @Test("activation quantization rounds exactly as llama.cpp on every ISA")
    func quantizationMatchesLlamaCpp() throws {
        for isa in coveredISAs() { quantizationMatchesLlamaCpp(isa: isa) }
    }

    func quantizationMatchesLlamaCpp(isa: bk_isa) {
        var random = KernelTestRandom(seed: 1)
        let columns = 160
        var x = random.floats(columns * 3, scale: 3)
        // Block 0 holds exact ties (amax 127 makes the multiplier 1): 2.5 → 2, 3.5 → 4, -2.5 → -2.
        x[0] = 127; x[1] = 2.5; x[2] = 3.5; x[3] = -2.5; x[4] = 0.5; x[5] = -0.5
        // Block 1 is all zeros: d = 0 and q = 0.
        for i in 32..<64 { x[i] = 0 }
        let scratch = KernelActivationScratch(columns: columns, batch: 3)
        bk_quantize_act(isa, BK_TYPE_Q4_1, x, Int32(columns), 3, scratch.pointer)
        for v in 0..<3 {
            for b in 0..<(columns / 32) {
                let start = v * columns + b * 32
                let want = Self.referenceQuantize(x[start..<(start + 32)])
                let got = scratch.block(vector: v, block: b)
                #expect(got.qs == want.qs, "ISA \(isaName(isa)) vector \(v) block \(b)")
                #expect(got.d == want.d && got.s == want.s && got.sum == want.sum, "ISA \(isaName(isa)) vector \(v) block \(b)")
            }
        }
        let tie = scratch.block(vector: 0, block: 0)
        #expect(Array(tie.qs[0..<6]) == [127, 2, 4, -2, 0, 0], "ISA \(isaName(isa))")
    }

    @Test("quantized activation scratch is byte-identical on every ISA", arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func quantizationIdenticalAcrossISAs(type: GGMLType) {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 8)
        for columns in [32, 64, 96, 224, 576, 800, 1536] {
            let batch = 3
            let x = random.floats(columns * batch, scale: 5)
            let bytes = bk_act_bytes(Int32(columns), Int32(batch))
            func quantize(_ isa: bk_isa) -> [UInt8] {
                var out = [UInt8](repeating: 0, count: bytes)
                out.withUnsafeMutableBytes {
                    bk_quantize_act(isa, bk_type(rawValue: type.ggmlID), x, Int32(columns), Int32(batch), $0.baseAddress)
                }
                return out
            }
            let scalar = quantize(BK_ISA_SCALAR)
            for isa in isas where isa != BK_ISA_SCALAR {
                #expect(quantize(isa) == scalar, "\(type) \(columns) columns, ISA \(isaName(isa))")
            }
        }
    }

    @Test("dequantization decodes the GGUF block layouts", arguments: [GGMLType.q4_0, .q4_1, .q8_0, .f16, .bf16, .f32])
    func dequantizationDecodesBlocks(type: GGMLType) throws {
        var random = KernelTestRandom(seed: 2)
        let columns = 64
        let bytes = randomKernelWeights(type, rows: 3, columns: columns, random: &random)
        func f16(_ o: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)) }
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: type, rows: 3, columns: columns, base: raw.baseAddress!)
            for r in 0..<3 {
                let got = kernelDequantizedRow(w, r)
                for c in 0..<columns {
                    let want: Float
                    let rowStart = r * w.rowBytes
                    switch type {
                    case .q4_0, .q4_1, .q8_0:
                        let blk = rowStart + (c / 32) * type.blockBytes
                        let j = c % 32
                        if type == .q8_0 {
                            want = Float(Int8(bitPattern: bytes[blk + 2 + j])) * f16(blk)
                        } else {
                            let qsStart = blk + (type == .q4_1 ? 4 : 2)
                            let byte = bytes[qsStart + j % 16]
                            let q = Int(j < 16 ? byte & 0x0F : byte >> 4)
                            want = type == .q4_1 ? Float(q) * f16(blk) + f16(blk + 2) : Float(q - 8) * f16(blk)
                        }
                    case .f16: want = f16(rowStart + 2 * c)
                    case .bf16: want = Float(bitPattern: (UInt32(bytes[rowStart + 2 * c]) | UInt32(bytes[rowStart + 2 * c + 1]) << 8) << 16)
                    case .f32:
                        let o = rowStart + 4 * c
                        want = Float(bitPattern: UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24)
                    default:
                        // The other types are checked against gguf-py (DequantizeReferenceTests).
                        Issue.record("no hand decoder for \(type)")
                        return
                    }
                    #expect(got[c] == want, "row \(r) column \(c)")
                }
            }
        }
    }

    /// Σ over blocks of |each exact integer block term| (+ |m·s| for Q4_1): bounds the float error of any
    /// summation order of the kernel's per-block terms.
    static func termBound(_ type: GGMLType, row: UnsafeRawPointer, scratch: KernelActivationScratch, vector: Int) -> Float {
        var bound: Float = 0
        for b in 0..<(scratch.columns / 32) {
            let blk = row + b * type.blockBytes
            let a = scratch.block(vector: vector, block: b)
            let dw = Float(Float16(bitPattern: blk.loadUnaligned(as: UInt16.self)))
            var ints: Int32 = 0
            for j in 0..<32 {
                let q: Int32
                switch type {
                case .q8_0: q = Int32(blk.load(fromByteOffset: 2 + j, as: Int8.self))
                default:
                    let byte = blk.load(fromByteOffset: (type == .q4_1 ? 4 : 2) + j % 16, as: UInt8.self)
                    let n = Int32(j < 16 ? byte & 0x0F : byte >> 4)
                    q = type == .q4_0 ? n - 8 : n
                }
                ints += abs(q * Int32(a.qs[j]))
            }
            bound += abs(dw * a.d) * Float(ints)
            if type == .q4_1 {
                bound += abs(Float(Float16(bitPattern: (blk + 2).loadUnaligned(as: UInt16.self))) * a.s)
            }
        }
        return bound
    }

    /// Each (vector, row) of `got` within rounding of the scalar twin's: 2·(blocks + 16) ulp of the sum of the
    /// row's absolute block terms (summation order is the only difference).
    static func expectNearScalar(
        _ got: [Float], _ scalar: [Float], _ w: WeightMatrix, scratch: KernelActivationScratch, batch: Int, isa: bk_isa
    ) {
        let nb = Float(w.columns / 32)
        for v in 0..<batch {
            for r in 0..<w.rows {
                let bound = termBound(w.type, row: w.base + r * w.rowBytes, scratch: scratch, vector: v)
                let tolerance = 2 * (nb + 16) * Float.ulpOfOne * bound
                let i = v * w.rows + r
                #expect(abs(got[i] - scalar[i]) <= tolerance,
                        "\(w.type) \(w.rows)×\(w.columns) ISA \(isaName(isa)) vector \(v) row \(r): \(got[i]) vs \(scalar[i])")
            }
        }
    }

    @Test("every SIMD mat-vec variant matches its scalar twin", arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func simdMatchesScalar(type: GGMLType) throws {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 3)
        for (rows, columns) in Self.shapes {
            let batch = rows * columns > 100_000 ? 3 : 8
            let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
            let x = random.floats(columns * batch, scale: 2)
            let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: batch)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                func run(_ isa: bk_isa) -> [Float] {
                    var out = [Float](repeating: .nan, count: rows * batch)
                    out.withUnsafeMutableBufferPointer {
                        bk_matmul(isa, w.kernelType, w.base, w.rowBytes, 0, Int32(rows), Int32(columns),
                                  scratch.pointer, Int32(batch), $0.baseAddress, rows)
                    }
                    return out
                }
                let scalar = run(BK_ISA_SCALAR)
                for isa in isas where isa != BK_ISA_SCALAR {
                    Self.expectNearScalar(run(isa), scalar, w, scratch: scratch, batch: batch, isa: isa)
                }
            }
        }
    }

    @Test("batching never changes a vector's result, on any ISA", arguments: [GGMLType.q4_0, .q4_1, .q8_0, .f16, .f32, .bf16])
    func batchInvariance(type: GGMLType) throws {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 4)
        let rows = 45, columns = 160, batch = 11
        let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
        let x = random.floats(columns * batch)
        let quantized = type.blockElements > 1
        let scratch = KernelActivationScratch(columns: columns, batch: batch)
        if quantized {
            bk_quantize_act(BK_ISA_SCALAR, bk_type(rawValue: type.ggmlID), x, Int32(columns), Int32(batch), scratch.pointer)
        }
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
            for isa in isas {
                x.withUnsafeBufferPointer { xp in
                    func act(_ v: Int) -> UnsafeRawPointer {
                        quantized ? UnsafeRawPointer(scratch.pointer + v * scratch.vectorStride)
                                  : UnsafeRawPointer(xp.baseAddress! + v * columns)
                    }
                    var all = [Float](repeating: .nan, count: rows * batch)
                    all.withUnsafeMutableBufferPointer {
                        bk_matmul(isa, w.kernelType, w.base, w.rowBytes, 0, Int32(rows), Int32(columns), act(0),
                                  Int32(batch), $0.baseAddress, rows)
                    }
                    for v in 0..<batch {
                        var one = [Float](repeating: .nan, count: rows)
                        one.withUnsafeMutableBufferPointer {
                            bk_matmul(isa, w.kernelType, w.base, w.rowBytes, 0, Int32(rows), Int32(columns), act(v),
                                      1, $0.baseAddress, rows)
                        }
                        #expect(Array(all[(v * rows)..<((v + 1) * rows)]) == one, "\(type) ISA \(isaName(isa)) vector \(v)")
                    }
                }
            }
        }
    }

    @Test("the scalar dot twins equal a dequantize-then-dot reference", arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func scalarTwinsMatchReference(type: GGMLType) throws {
        var random = KernelTestRandom(seed: 5)
        let rows = 23, columns = 576
        let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
        let x = random.floats(columns, scale: 4)
        let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: 1)
        let xq = scratch.dequantized(vector: 0)
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
            for r in 0..<rows {
                let row = w.base + r * w.rowBytes
                let got: Float = switch type {
                case .q4_0: bk_q4_0_dot_scalar(row, scratch.pointer, Int32(columns))
                case .q4_1: bk_q4_1_dot_scalar(row, scratch.pointer, Int32(columns))
                default: bk_q8_0_dot_scalar(row, scratch.pointer, Int32(columns))
                }
                let wr = kernelDequantizedRow(w, r)
                var want = 0.0, magnitude = 0.0, sError = 0.0
                for c in 0..<columns {
                    want += Double(wr[c]) * Double(xq[c])
                    magnitude += abs(Double(wr[c]) * Double(xq[c]))
                }
                if type == .q4_1 {
                    // llama.cpp's s is f16(d·Σq) with d unrounded: within two f16 roundings of d̂·Σq.
                    for b in 0..<(columns / 32) {
                        let m = Float(Float16(bitPattern: (row + b * 20 + 2).loadUnaligned(as: UInt16.self)))
                        sError += abs(Double(m) * Double(scratch.block(vector: 0, block: b).s)) * 2e-3
                    }
                }
                #expect(abs(Double(got) - want) <= 1e-5 * magnitude + sError, "\(type) row \(r): \(got) vs \(want)")
            }
        }
    }

    @Test("matmul matches a naive dequantize-then-dot reference", arguments: [1, 2])
    func matmulMatchesReference(threads: Int) throws {
        let pool = ThreadPool(threads: threads)
        var random = KernelTestRandom(seed: 6)
        for type in [GGMLType.q4_0, .q4_1, .q8_0, .f16, .bf16, .f32] {
            for (rows, columns, batch) in [(576, 1536, 2), (1536, 576, 1), (37, 160, 8), (131, 64, 3)] {
                let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
                let x = random.floats(columns * batch, scale: 2)
                var out = [Float](repeating: .nan, count: rows * batch)
                try bytes.withUnsafeBytes { raw in
                    let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                    out.withUnsafeMutableBufferPointer { o in
                        Kernels.matmul(w, input: x, batch: batch, output: o.baseAddress!, pool: pool)
                    }
                    for r in 0..<rows {
                        let wr = kernelDequantizedRow(w, r)
                        for v in 0..<batch {
                            var want = 0.0, tolerance = 0.0
                            for c in 0..<columns {
                                let xc = Double(x[v * columns + c])
                                want += Double(wr[c]) * xc
                                tolerance += 1e-5 * abs(Double(wr[c]) * xc)
                            }
                            if type.blockElements > 1 {
                                // Activation quantization moves each input by at most one step amax/127.
                                for b in 0..<(columns / 32) {
                                    let block = x[(v * columns + b * 32)..<(v * columns + b * 32 + 32)]
                                    let step = Double(block.map { abs($0) }.max()!) / 127
                                    for c in (b * 32)..<(b * 32 + 32) { tolerance += abs(Double(wr[c])) * step }
                                    if type == .q4_1 {
                                        let m = Float(Float16(bitPattern: (w.base + r * w.rowBytes + b * 20 + 2).loadUnaligned(as: UInt16.self)))
                                        tolerance += abs(Double(m)) * 32 * step * 127 * 2e-3
                                    }
                                }
                            }
                            let got = Double(out[v * rows + r])
                            #expect(abs(got - want) <= tolerance, "\(type) \(rows)×\(columns) vector \(v) row \(r): \(got) vs \(want)")
                        }
                    }
                }
            }
        }
    }

    @Test("dequantizeAll equals dequantizeRow for every row")
    func dequantizeAllMatchesRows() throws {
        let pool = ThreadPool(threads: 2)
        var random = KernelTestRandom(seed: 7)
        for type in [GGMLType.q4_0, .q4_1, .q8_0, .f16, .bf16, .f32] {
            let rows = 77, columns = 96
            let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                var all = [Float](repeating: .nan, count: rows * columns)
                all.withUnsafeMutableBufferPointer { Kernels.dequantizeAll(w, into: $0.baseAddress!, pool: pool) }
                for r in 0..<rows {
                    #expect(Array(all[(r * columns)..<((r + 1) * columns)]) == kernelDequantizedRow(w, r), "\(type) row \(r)")
                }
            }
        }
    }
}

@Suite("WeightMatrix")
struct WeightMatrixTests {
    @Test("a row holds whole blocks and reports its byte size")
    func rowBytes() throws {
        let storage = [UInt8](repeating: 0, count: 64)
        try storage.withUnsafeBytes { raw throws in
            let base = raw.baseAddress!
            let q41 = try WeightMatrix(type: .q4_1, rows: 2, columns: 576, base: base)
            let q80 = try WeightMatrix(type: .q8_0, rows: 2, columns: 64, base: base)
            let q40 = try WeightMatrix(type: .q4_0, rows: 2, columns: 32, base: base)
            let f16 = try WeightMatrix(type: .f16, rows: 2, columns: 7, base: base)
            let f32 = try WeightMatrix(type: .f32, rows: 2, columns: 7, base: base)
            #expect(q41.rowBytes == 360)
            #expect(q80.rowBytes == 68)
            #expect(q40.rowBytes == 18)
            #expect(f16.rowBytes == 14)
            #expect(f32.byteCount == 56)
        }
    }

    @Test("bad shapes are refused with an invalid-argument error")
    func badShapes() {
        let storage = [UInt8](repeating: 0, count: 64)
        storage.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            for (type, rows, columns) in [(GGMLType.q4_1, 2, 48), (.q8_0, 0, 32), (.f32, 3, 0), (.q4_0, -1, 32)] {
                #expect {
                    _ = try WeightMatrix(type: type, rows: rows, columns: columns, base: base)
                } throws: { error in
                    (error as? InferenceError)?.code == .invalidArgument
                }
            }
            do {
                _ = try WeightMatrix(type: .q4_1, rows: 2, columns: 48, base: base)
            } catch {
                #expect((error as? InferenceError)?.description == "invalid argument: Q4_1 rows hold whole blocks of 32 elements; 48 columns is not a multiple")
            }
        }
    }

    @Test("the int8 peak probe runs the dot-product instructions it counts, on every ISA")
    func int8PeakProbe() {
        let isas = coveredISAs()
        for isa in isas {
            var sink: Int32 = 0
            let macs = bk_int8_dot_burn(isa, 1000, &sink)
            switch isa {
            case BK_ISA_AVX512:
                // 24 accumulators of 16 lanes start at i and gain 4 · 3 · 5 per round.
                #expect(macs == 1000 * 24 * 64)
                #expect(sink == 16 * (276 + 24 * 60 * 1000))
            case BK_ISA_AVX2:
                // 12 accumulators of 8 lanes start at i and gain 2 · 2 · 3 · 5 per round; lanes 0 and 7 summed.
                #expect(macs == 1000 * 12 * 32)
                #expect(sink == 2 * (66 + 12 * 60 * 1000))
            default:
                #expect(macs == 0)
            }
        }
    }
}
