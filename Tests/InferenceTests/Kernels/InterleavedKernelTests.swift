import CKernels
import GGUF
import Synchronization
import Testing
@testable import Inference

/// The sixteen-row interleaved copies and their kernel: the same products as the scalar twins on the original
/// blocks, batch-invariant, refused for shapes they do not take; and the engine-level wrapper.
@Suite("Interleaved (x16) quantized kernels")
struct InterleavedKernelTests {
    static let shapes: [(rows: Int, columns: Int)] = [(16, 32), (48, 576), (32, 1536), (16, 96), (64, 160)]

    /// Packs `bytes` (rows × columns of `type`) and runs the interleaved kernel for rows `range` on `isa`.
    static func interleavedProduct(
        _ type: GGMLType, bytes: [UInt8], rows: Int, columns: Int, scratch: KernelActivationScratch, batch: Int,
        isa: bk_isa, range: Range<Int>? = nil
    ) -> [Float] {
        let t = bk_type(rawValue: type.ggmlID)
        let count = bk_x16_bytes(t, Int32(rows), Int32(columns))
        var packed = [UInt8](repeating: 0, count: count)
        let rowBytes = columns / type.blockElements * type.blockBytes
        let status = bytes.withUnsafeBytes { bk_x16_pack(t, $0.baseAddress, rowBytes, Int32(rows), Int32(columns), &packed) }
        #expect(status == 0)
        var out = [Float](repeating: .nan, count: rows * batch)
        let rows32 = Int32(rows)
        let r = range ?? 0..<rows
        out.withUnsafeMutableBufferPointer { o in
            bk_matmul_x16(isa, t, packed, Int32(r.lowerBound), Int32(r.upperBound), Int32(columns), scratch.pointer,
                          Int32(batch), o.baseAddress, Int(rows32))
        }
        return out
    }

    @Test("the interleaved kernel matches the scalar twins on the original blocks, on every ISA",
          arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func matchesScalarTwins(type: GGMLType) throws {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 21)
        for (rows, columns) in Self.shapes {
            let batch = 8
            let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
            let x = random.floats(columns * batch, scale: 2)
            let scratch = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: batch)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, rows: rows, columns: columns, base: raw.baseAddress!)
                var scalar = [Float](repeating: .nan, count: rows * batch)
                scalar.withUnsafeMutableBufferPointer {
                    bk_matmul(BK_ISA_SCALAR, w.kernelType, w.base, w.rowBytes, 0, Int32(rows), Int32(columns),
                              scratch.pointer, Int32(batch), $0.baseAddress, rows)
                }
                for isa in isas {
                    let got = Self.interleavedProduct(type, bytes: bytes, rows: rows, columns: columns, scratch: scratch,
                                                      batch: batch, isa: isa)
                    QuantizedKernelTests.expectNearScalar(got, scalar, w, scratch: scratch, batch: batch, isa: isa)
                }
            }
        }
    }

    @Test("batch size and row range never change a result", arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func batchAndRangeInvariance(type: GGMLType) {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 22)
        let rows = 48, columns = 576, batch = 11
        let bytes = randomKernelWeights(type, rows: rows, columns: columns, random: &random)
        let x = random.floats(columns * batch)
        let all = KernelActivationScratch(quantizing: x, for: type, columns: columns, batch: batch)
        for isa in isas {
            let together = Self.interleavedProduct(type, bytes: bytes, rows: rows, columns: columns, scratch: all,
                                                   batch: batch, isa: isa)
            for v in 0..<batch {
                let one = KernelActivationScratch(
                    quantizing: Array(x[(v * columns)..<((v + 1) * columns)]), for: type, columns: columns, batch: 1)
                let alone = Self.interleavedProduct(type, bytes: bytes, rows: rows, columns: columns, scratch: one,
                                                    batch: 1, isa: isa)
                #expect(alone == Array(together[(v * rows)..<((v + 1) * rows)]), "\(type) ISA \(isaName(isa)) vector \(v)")
            }
            // Rows 16..<32 alone equal the same rows of the full product; the rest of the output is untouched.
            let middle = Self.interleavedProduct(type, bytes: bytes, rows: rows, columns: columns, scratch: all,
                                                 batch: batch, isa: isa, range: 16..<32)
            for v in 0..<batch {
                for r in 0..<rows {
                    let i = v * rows + r
                    if (16..<32).contains(r) {
                        #expect(middle[i] == together[i])
                    } else {
                        #expect(middle[i].isNaN)
                    }
                }
            }
        }
    }

    @Test("shapes and types the layout does not take are refused")
    func refusals() {
        #expect(bk_x16_bytes(BK_TYPE_Q4_1, 40, 576) == 0)  // rows not a multiple of 16
        #expect(bk_x16_bytes(BK_TYPE_Q8_0, 16, 40) == 0)   // columns not whole blocks
        #expect(bk_x16_bytes(BK_TYPE_F16, 16, 64) == 0)
        #expect(bk_x16_bytes(BK_TYPE_Q4_1, 16, 64) == 2 * 320)
        var sink = [UInt8](repeating: 0, count: 64)
        #expect(bk_x16_pack(BK_TYPE_F32, sink, 256, 16, 64, &sink) == -1)
        #expect(bk_x16_pack(BK_TYPE_Q4_0, sink, 18, 15, 32, &sink) == -1)
    }

    @Test("Kernels.matmul on the interleaved copy agrees with the in-place kernel; only Q types in groups of 16 rows get one")
    func engineWrapper() throws {
        var random = KernelTestRandom(seed: 23)
        let rows = 64, columns = 576, batch = 5
        let bytes = randomKernelWeights(.q4_1, rows: rows, columns: columns, random: &random)
        let x = random.floats(columns * batch)
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: raw.baseAddress!)
            guard let interleaved = InterleavedMatrix(w) else {
                // Only kernels with a SIMD interleaved variant get copies; elsewhere the in-place kernels run.
                #expect(bk_x16_preferred(Kernels.isa, BK_TYPE_Q4_1) == 0)
                return
            }
            let pool = ThreadPool(threads: 2)
            var plain = [Float](repeating: 0, count: rows * batch), copied = plain
            plain.withUnsafeMutableBufferPointer { Kernels.matmul(w, input: x, batch: batch, output: $0.baseAddress!, pool: pool) }
            copied.withUnsafeMutableBufferPointer {
                Kernels.matmul(w, interleaved: interleaved, input: x, batch: batch, output: $0.baseAddress!, pool: pool)
            }
            for i in plain.indices { #expect(abs(plain[i] - copied[i]) <= 1e-4 * max(1, abs(plain[i])), "element \(i)") }
        }
        let f32 = [Float](repeating: 1, count: 16 * 32)
        try f32.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .f32, rows: 16, columns: 32, base: raw.baseAddress!)
            #expect(InterleavedMatrix(w) == nil)
        }
        let odd = randomKernelWeights(.q8_0, rows: 20, columns: 64, random: &random)
        try odd.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .q8_0, rows: 20, columns: 64, base: raw.baseAddress!)
            #expect(InterleavedMatrix(w) == nil)
        }
    }

    @Test("a group of products in one fork/join gives exactly the separate products, with or without copies and epilogue",
          arguments: [1, 2, 8])
    func groupedProducts(batch: Int) throws {
        var random = KernelTestRandom(seed: 25)
        let columns = 576
        // Q (96 rows), K and V (32 rows each) share Q4_1; a Q8_0 part forces the one-at-a-time fallback.
        let shapes: [(GGMLType, Int)] = [(.q4_1, 96), (.q4_1, 32), (.q4_1, 32), (.q8_0, 32)]
        let blobs = shapes.map { shape -> UnsafeMutableRawBufferPointer in
            let bytes = randomKernelWeights(shape.0, rows: shape.1, columns: columns, random: &random)
            let blob = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
            bytes.withUnsafeBytes { blob.copyMemory(from: $0) }
            return blob
        }
        defer { blobs.forEach { $0.deallocate() } }
        let matrices = try zip(blobs, shapes).map {
            try WeightMatrix(type: $1.0, rows: $1.1, columns: columns, base: UnsafeRawPointer($0.baseAddress!))
        }
        let copies = matrices.map { InterleavedMatrix($0) }
        let x = random.floats(columns * batch, scale: 3)
        let pool = ThreadPool(threads: 2)
        let outputs = matrices.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.rows * batch) }
        defer { outputs.forEach { $0.deallocate() } }

        for useCopies in [false, true] {
            var expected: [[Float]] = []
            for (i, w) in matrices.enumerated() {
                outputs[i].initialize(repeating: .nan)
                Kernels.matmul(w, interleaved: useCopies ? copies[i] : nil, input: x, batch: batch,
                               output: outputs[i].baseAddress!, pool: pool)
                expected.append(Array(outputs[i]))
            }
            func grouped(_ indices: [Int], epilogue: ((Range<Int>) -> Void)? = nil) -> [[Float]] {
                for i in indices { outputs[i].initialize(repeating: .nan) }
                let parts = indices.map {
                    Kernels.Projection(weights: matrices[$0], interleaved: useCopies ? copies[$0] : nil,
                                       output: outputs[$0].baseAddress!)
                }
                parts.withUnsafeBufferPointer { Kernels.matmul(group: $0, input: x, batch: batch, pool: pool, epilogue: epilogue) }
                return indices.map { Array(outputs[$0]) }
            }
            #expect(grouped([0, 1, 2]) == [expected[0], expected[1], expected[2]], "copies \(useCopies)")
            #expect(grouped([1, 3, 2]) == [expected[1], expected[3], expected[2]], "copies \(useCopies), mixed types")
            // Equal rows with an epilogue: each row range comes once, after both parts wrote it for every vector
            // (also when mixed types make the parts run one at a time).
            for pair in [[1, 2], [1, 3]] {
                let seen = Mutex<[Int]>([])
                let (a, b) = (outputs[pair[0]], outputs[pair[1]])
                let paired = grouped(pair) { range in
                    let written = (0..<batch).allSatisfy { vector in
                        range.allSatisfy { r in !a[vector * 32 + r].isNaN && !b[vector * 32 + r].isNaN }
                    }
                    seen.withLock { $0.append(contentsOf: written ? Array(range) : []) }
                }
                #expect(paired == [expected[pair[0]], expected[pair[1]]])
                #expect(seen.withLock { $0.sorted() } == Array(0..<32), "copies \(useCopies), parts \(pair)")
            }
        }
    }

    @Test("a file-mapped model's copies give back the file pages they came from, which still read the same")
    func modelCopiesReleaseFilePages() throws {
        let model = try EngineTestModel.model()
        let w = model.weights.layers[3][.up]
        let before = kernelDequantizedRow(w, 700)
        let embedding = kernelDequantizedRow(model.weights.tokenEmbedding, 1234)
        let copies = model.interleavedWeights
        #expect(copies.layers.count == model.weights.layers.count)
        if bk_x16_preferred(Kernels.isa, BK_TYPE_Q4_1) != 0 && bk_x16_preferred(Kernels.isa, BK_TYPE_Q8_0) != 0 {
            #expect(copies.layers.allSatisfy { $0.allSatisfy { $0 != nil } })
            #expect(copies.output != nil)
        }
        // Released pages fault back in from the file: the weights (and the tied embedding) read as before.
        #expect(kernelDequantizedRow(w, 700) == before)
        #expect(kernelDequantizedRow(model.weights.tokenEmbedding, 1234) == embedding)
        #expect(model.interleavedWeights.output === copies.output)
    }

    @Test("Kernels.matmul reuses the previous quantized input only for the same input, shape and type")
    func quantizedInputReuse() throws {
        var random = KernelTestRandom(seed: 24)
        let a = randomKernelWeights(.q4_1, rows: 32, columns: 64, random: &random)
        let b = randomKernelWeights(.q8_0, rows: 32, columns: 64, random: &random)
        let first = random.floats(64 * 2), second = random.floats(64 * 2)
        try a.withUnsafeBytes { ra in
            try b.withUnsafeBytes { rb in
                let wa = try WeightMatrix(type: .q4_1, rows: 32, columns: 64, base: ra.baseAddress!)
                let wb = try WeightMatrix(type: .q8_0, rows: 32, columns: 64, base: rb.baseAddress!)
                let pool = ThreadPool(threads: 1)
                func product(_ w: WeightMatrix, _ x: [Float], sameInput: Bool) -> [Float] {
                    var out = [Float](repeating: .nan, count: 32 * 2)
                    x.withUnsafeBufferPointer { xp in
                        out.withUnsafeMutableBufferPointer {
                            Kernels.matmul(w, input: xp.baseAddress!, batch: 2, output: $0.baseAddress!, pool: pool, sameInput: sameInput)
                        }
                    }
                    return out
                }
                let freshA = product(wa, second, sameInput: false)
                let freshB = product(wb, second, sameInput: false)
                _ = product(wa, first, sameInput: false)
                // Another input array (another address): quantized afresh despite the flag.
                #expect(product(wa, second, sameInput: true) == freshA)
                // Same input, another weight type (other correction terms): quantized afresh.
                #expect(product(wb, second, sameInput: true) == freshB)
                // Same input and type: reused, with the same result.
                #expect(product(wb, second, sameInput: true) == freshB)
            }
        }
    }
}
