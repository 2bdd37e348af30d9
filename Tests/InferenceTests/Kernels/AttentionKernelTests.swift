import CKernels
import Testing
@testable import Inference

/// The decode attention kernels read a paged cache in place; each ISA is checked against a double-precision
/// reference computed from the same cache bytes, and the SIMD variants against their scalar twin.
@Suite("Decode attention kernels")
struct AttentionKernelTests {
    /// A cache layer laid out as the engine's: blocks of [K: kvHeads × slots × hd, V: same], scattered by a
    /// shuffled block table.
    struct Layer {
        let f16: Bool, kvHeads: Int, blockSize: Int, hd: Int, blocks: Int
        var bytes: [UInt8]
        let table: [Int32]
        var width: Int { f16 ? 2 : 4 }
        var blockBytes: Int { 2 * kvHeads * blockSize * hd * width }
        func keyOffset(_ head: Int) -> Int { head * blockSize * hd * width }
        func valueOffset(_ head: Int) -> Int { (kvHeads + head) * blockSize * hd * width }

        init(f16: Bool, kvHeads: Int, blockSize: Int, hd: Int, blocks: Int, random: inout KernelTestRandom) {
            self.f16 = f16
            self.kvHeads = kvHeads
            self.blockSize = blockSize
            self.hd = hd
            self.blocks = blocks
            let elements = blocks * 2 * kvHeads * blockSize * hd
            var bytes = [UInt8](repeating: 0, count: elements * (f16 ? 2 : 4))
            for i in 0..<elements {
                let x = random.float() * 2
                if f16 {
                    let h = bk_f32_to_f16(x)
                    bytes[2 * i] = UInt8(h & 0xFF)
                    bytes[2 * i + 1] = UInt8(h >> 8)
                } else {
                    for k in 0..<4 { bytes[4 * i + k] = UInt8(truncatingIfNeeded: x.bitPattern >> (8 * UInt32(k))) }
                }
            }
            self.bytes = bytes
            var table = (0..<Int32(blocks)).map { $0 }
            for i in stride(from: blocks - 1, to: 0, by: -1) { table.swapAt(i, Int(random.next() % UInt64(i + 1))) }
            self.table = table
        }

        /// Element d of position t's key (or value) row for `head`, as the kernels read it.
        func element(value: Bool, head: Int, position t: Int, _ d: Int) -> Double {
            let offset = Int(table[t / blockSize]) * blockBytes + (value ? valueOffset(head) : keyOffset(head))
                + ((t % blockSize) * hd + d) * width
            if f16 { return Double(bk_f16_to_f32(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8)) }
            var bits: UInt32 = 0
            for k in 0..<4 { bits |= UInt32(bytes[offset + k]) << (8 * UInt32(k)) }
            return Double(Float(bitPattern: bits))
        }

        func scores(_ isa: bk_isa, q: [Float], group: Int, head: Int, scale: Float, count: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: group * count)
            bytes.withUnsafeBytes { base in
                bk_attn_scores(
                    isa, f16 ? 1 : 0, q, Int32(group), Int32(hd), scale, base.baseAddress, blockBytes, table,
                    Int32(blockSize), keyOffset(head), Int32(count), &out)
            }
            return out
        }

        func values(_ isa: bk_isa, p: [Float], group: Int, head: Int, count: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: group * hd)
            bytes.withUnsafeBytes { base in
                bk_attn_values(
                    isa, f16 ? 1 : 0, p, Int32(group), Int32(hd), base.baseAddress, blockBytes, table,
                    Int32(blockSize), valueOffset(head), Int32(count), &out)
            }
            return out
        }
    }

    typealias Shape = (hd: Int, group: Int, blockSize: Int, count: Int)
    /// Shapes that exercise every path: the head sizes the AVX-512 kernels take (64 and 128; values any multiple
    /// of 64), others that fall to the AVX2 kernels (80, 96, 24), a head size only the scalar kernel takes (12),
    /// 1–5 heads per group, block sizes that are and are not multiples of 8, and counts that end inside a block.
    static let shapes: [Shape] = [
        (64, 3, 16, 1), (64, 3, 16, 16), (64, 3, 16, 37), (64, 1, 16, 100), (64, 5, 16, 64), (128, 2, 16, 33),
        (80, 3, 16, 29), (24, 4, 5, 23), (12, 2, 16, 9), (64, 3, 7, 50), (96, 4, 32, 70),
    ]

    /// Runs `body` for each cache type and shape, with a layer of `kvHeads` KV heads of random keys and values
    /// (from one generator seeded `seed`, which `body` may draw from too).
    static func forEachCase(seed: UInt64, kvHeads: Int, _ body: (Bool, Shape, Layer, inout KernelTestRandom) -> Void) {
        var random = KernelTestRandom(seed: seed)
        for f16 in [true, false] {
            for shape in shapes {
                let blocks = (shape.count + shape.blockSize - 1) / shape.blockSize + 3
                let layer = Layer(f16: f16, kvHeads: kvHeads, blockSize: shape.blockSize, hd: shape.hd, blocks: blocks, random: &random)
                body(f16, shape, layer, &random)
            }
        }
    }

    /// `got` (and the scalar twin's result) equal the double-precision sum of `terms` to within 1e-6 of the sum
    /// of their magnitudes: f32 rounding in any order.
    static func expectSum(_ got: Float, scalar: Float, of terms: [Double], _ what: String) {
        let want = terms.reduce(0, +)
        let tolerance = 1e-6 * terms.reduce(0) { $0 + abs($1) } + 1e-7
        #expect(abs(Double(got) - want) <= tolerance, "\(what): \(got) vs \(want)")
        #expect(abs(Double(got - scalar)) <= 2 * tolerance, "\(what): \(got) vs the scalar twin's \(scalar)")
    }

    @Test("scores equal scale · q·K for every position and head, on every ISA, f16 and f32 caches")
    func scores() {
        let isas = coveredISAs()
        Self.forEachCase(seed: 41, kvHeads: 2) { f16, shape, layer, random in
            let q = random.floats(shape.group * shape.hd)
            let scale: Float = 0.125
            let scalar = layer.scores(BK_ISA_SCALAR, q: q, group: shape.group, head: 1, scale: scale, count: shape.count)
            for isa in isas {
                let got = layer.scores(isa, q: q, group: shape.group, head: 1, scale: scale, count: shape.count)
                for h in 0..<shape.group {
                    for t in 0..<shape.count {
                        let terms = (0..<shape.hd).map { d in
                            Double(scale) * Double(q[h * shape.hd + d]) * layer.element(value: false, head: 1, position: t, d)
                        }
                        let index = h * shape.count + t
                        Self.expectSum(got[index], scalar: scalar[index], of: terms,
                                       "ISA \(isaName(isa)) f16 \(f16) \(shape) head \(h) position \(t)")
                    }
                }
            }
        }
    }

    @Test("values equal Σ p·V over the positions, on every ISA, f16 and f32 caches")
    func values() {
        let isas = coveredISAs()
        Self.forEachCase(seed: 42, kvHeads: 3) { f16, shape, layer, random in
            let p = (0..<(shape.group * shape.count)).map { _ in abs(random.float()) }
            let scalar = layer.values(BK_ISA_SCALAR, p: p, group: shape.group, head: 2, count: shape.count)
            for isa in isas {
                let got = layer.values(isa, p: p, group: shape.group, head: 2, count: shape.count)
                for h in 0..<shape.group {
                    for d in 0..<shape.hd {
                        let terms = (0..<shape.count).map { t in
                            Double(p[h * shape.count + t]) * layer.element(value: true, head: 2, position: t, d)
                        }
                        let index = h * shape.hd + d
                        Self.expectSum(got[index], scalar: scalar[index], of: terms,
                                       "ISA \(isaName(isa)) f16 \(f16) \(shape) head \(h) element \(d)")
                    }
                }
            }
        }
    }

    @Test("no positions give zero output and leave the scores untouched")
    func emptyHistory() {
        let isas = coveredISAs()
        var random = KernelTestRandom(seed: 43)
        let layer = Layer(f16: true, kvHeads: 1, blockSize: 16, hd: 64, blocks: 2, random: &random)
        for isa in isas {
            #expect(layer.values(isa, p: [], group: 3, head: 0, count: 0) == [Float](repeating: 0, count: 192))
            #expect(layer.scores(isa, q: random.floats(192), group: 3, head: 0, scale: 1, count: 0).isEmpty)
        }
    }
}
