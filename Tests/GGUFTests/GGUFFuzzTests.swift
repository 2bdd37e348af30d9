import Foundation
import Testing
import GGUF

/// SplitMix64: a tiny seeded generator so every run throws the same inputs at the reader.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("GGUF reader fuzzing")
struct GGUFFuzzTests {
    static func seedFile() -> (bytes: [UInt8], layout: TestLayout) {
        var writer = GGUFTestWriter()
        writer.alignment = 32
        writer.metadata = [
            ("general.architecture", .string("llama")), ("llama.block_count", .uint32(2)),
            ("llama.rope.freq_base", .float32(10_000)), ("tokenizer.ggml.tokens", .array([.string("a"), .string("bc")])),
            ("tokenizer.ggml.scores", .array([.float32(0), .float32(-1)])), ("flag", .bool(true)),
            ("nested", .array([.array([.int16(-1)]), .array([.uint64(7), .uint64(8)])])), ("f64", .float64(2)),
        ]
        writer.tensors = [
            TestTensor("token_embd.weight", [32, 2], .q8_0), TestTensor("blk.0.attn_q.weight", [32, 1], .q4_1),
            TestTensor("output_norm.weight", [4], .f32),
        ]
        return writer.build()
    }

    /// Parses `bytes`; on failure the error must name an offset inside the input, on success every tensor
    /// must lie inside it and be readable.
    static func check(_ bytes: [UInt8]) -> (keptContract: Bool, parsed: Bool) {
        do {
            let file = try GGUFFile(bytes: bytes, name: "fuzz.gguf")
            for tensor in file.tensors {
                guard tensor.offset >= 0, tensor.offset + tensor.byteCount <= bytes.count,
                      file.withTensorData(tensor, { $0.count }) == tensor.byteCount
                else { return (false, true) }
            }
            return (true, true)
        } catch {
            guard let offset = error.offset else { return (false, false) }
            let named = offset >= 0 && offset <= bytes.count && error.message.hasPrefix("fuzz.gguf, offset \(offset): ")
            return (named, false)
        }
    }

    @Test("every prefix of a valid file is refused with an offset inside the prefix")
    func everyPrefix() throws {
        let (bytes, _) = Self.seedFile()
        #expect(Self.check(bytes) == (true, true))
        _ = try GGUFFile(bytes: bytes, name: "seed.gguf")
        var failures = 0
        for length in 0 ..< bytes.count {
            let prefix = Array(bytes[0 ..< length])
            guard let error = parseError(prefix) else {
                Issue.record("prefix of \(length) bytes parsed")
                continue
            }
            if !(error.code == .truncated || error.code == .limitExceeded) || (error.offset ?? .max) > length {
                failures += 1
                Issue.record("prefix \(length): \(error)")
            }
        }
        #expect(failures == 0)
    }

    /// 6000 by default; set `GGUF_FUZZ_ITERATIONS` for a longer run by hand.
    static let iterations = ProcessInfo.processInfo.environment["GGUF_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 6000

    @Test("6000 seeded mutations of a valid file never crash and always report an offset")
    func mutations() {
        let (seed, layout) = Self.seedFile()
        var rng = SplitMix64(state: 0xBA70_0001)
        let extremes: [UInt64] = [0, 1, 0xFF, 0xFFFF_FFFF, 1 << 32, 1 << 62, UInt64(Int.max), UInt64.max, UInt64.max - 1]
        var parsed = 0, refused = 0
        for iteration in 0 ..< Self.iterations {
            var bytes = seed
            let mutationCount = 1 + Int(rng.next() % 3)
            for _ in 0 ..< mutationCount {
                switch rng.next() % 6 {
                case 0:  // flip bits in one byte
                    let i = Int(rng.next() % UInt64(bytes.count))
                    bytes[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                case 1:  // overwrite a random byte
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 2:  // insert a few random bytes
                    let at = Int(rng.next() % UInt64(bytes.count + 1))
                    let inserted = (0 ..< 1 + Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    bytes.insert(contentsOf: inserted, at: at)
                case 3:  // delete a short range
                    let at = Int(rng.next() % UInt64(bytes.count))
                    bytes.removeSubrange(at ..< min(bytes.count, at + 1 + Int(rng.next() % 8)))
                case 4, 5:  // corrupt a length or count field with an extreme or random value
                    let field = layout.lengthFields[Int(rng.next() % UInt64(layout.lengthFields.count))]
                    let value = rng.next() % 2 == 0 ? extremes[Int(rng.next() % UInt64(extremes.count))]
                        : rng.next() % 4096
                    if field + 8 <= bytes.count { bytes = bytes.patched(value, at: field) }
                default:
                    break
                }
                if bytes.isEmpty { bytes = [0] }
            }
            if rng.next() % 4 == 0 {
                bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            }
            let outcome = Self.check(bytes)
            if !outcome.keptContract {
                Issue.record("mutation \(iteration) broke the reader's contract: \(parseError(bytes).map { "\($0)" } ?? "parsed")")
            }
            if outcome.parsed { parsed += 1 } else { refused += 1 }
        }
        // Both outcomes must occur, or the mutations are not exercising the reader.
        print("GGUF fuzz: \(parsed) mutated files parsed, \(refused) refused")
        #expect(parsed > 0 && refused > Self.iterations * 5 / 6)
    }
}
