import Testing
@testable import Inference

@Suite("KV sequence descriptor")
struct KVSequenceDescriptorTests {
    static let descriptor = KVSequenceDescriptor(
        layout: KVCacheLayout(layers: 30, kvHeads: 3, headDim: 64, blockSize: 16, dataType: .f16, modelFingerprint: "modèle-✓"),
        tokenCount: 1000)

    static func field(_ bytes: [UInt8], at offset: Int, size: Int) -> UInt64 {
        bytes[offset..<offset + size].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    @Test("the header is little-endian at the documented offsets and decodes to the same descriptor")
    func roundTrip() throws {
        let bytes = Self.descriptor.encoded()
        let fingerprint = Array("modèle-✓".utf8)
        #expect(bytes.count == 40 + fingerprint.count)
        #expect(Array(bytes[0..<4]) == Array("BKV1".utf8))
        #expect(Self.field(bytes, at: 4, size: 4) == 1)
        #expect(Self.field(bytes, at: 8, size: 4) == 30)
        #expect(Self.field(bytes, at: 12, size: 4) == 3)
        #expect(Self.field(bytes, at: 16, size: 4) == 64)
        #expect(Self.field(bytes, at: 20, size: 4) == 16)
        #expect(Self.field(bytes, at: 24, size: 4) == 0)
        #expect(Self.field(bytes, at: 28, size: 8) == 1000)
        #expect(Self.field(bytes, at: 36, size: 4) == UInt64(fingerprint.count))
        #expect(Array(bytes[40...]) == fingerprint)
        #expect(try KVSequenceDescriptor(decoding: bytes) == Self.descriptor)

        var f32 = Self.descriptor
        f32.layout.dataType = .f32
        f32.layout.modelFingerprint = ""
        f32.tokenCount = 0
        #expect(try KVSequenceDescriptor(decoding: f32.encoded()) == f32)
    }

    @Test("byte counts follow the block count")
    func byteCounts() {
        // 1000 tokens in blocks of 16 → 63 blocks of 2·3·16·64 f16 elements.
        #expect(Self.descriptor.blockCount == 63)
        #expect(Self.descriptor.layerByteCount == 63 * 12_288)
        #expect(Self.descriptor.totalByteCount == 30 * 63 * 12_288)
    }

    static func decodeError(_ bytes: [UInt8]) -> InferenceError? {
        thrownInferenceError { _ = try KVSequenceDescriptor(decoding: bytes) }
    }

    static func patched(_ offset: Int, _ value: UInt32) -> [UInt8] {
        var bytes = descriptor.encoded()
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<offset + 4, with: $0) }
        return bytes
    }

    @Test("bad magic, version, data type and out-of-range fields are refused with their byte offset")
    func hostileFields() {
        var badMagic = Self.descriptor.encoded()
        badMagic[3] = UInt8(ascii: "2")
        let magic = Self.decodeError(badMagic)
        #expect(magic?.code == .malformedKVDescriptor)
        #expect(magic?.message.hasPrefix("KV descriptor byte offset 0: bad magic") == true)

        let cases: [([UInt8], String)] = [
            (Self.patched(4, 2), "byte offset 4: unsupported version 2"),
            (Self.patched(8, 0), "byte offset 8: layers 0 out of range 1...4096"),
            (Self.patched(8, 100_000), "byte offset 8: layers 100000 out of range"),
            (Self.patched(12, 0), "byte offset 12: kvHeads 0 out of range"),
            (Self.patched(16, 1 << 20), "byte offset 16: headDim 1048576 out of range"),
            (Self.patched(20, 0), "byte offset 20: blockSize 0 out of range"),
            (Self.patched(24, 7), "byte offset 24: unknown dataType code 7"),
            (Self.patched(36, 1 << 30), "byte offset 36: fingerprint length 1073741824 out of range"),
        ]
        for (bytes, expected) in cases {
            let error = Self.decodeError(bytes)
            #expect(error?.code == .malformedKVDescriptor)
            #expect(error?.message.contains(expected) == true, "\(error?.message ?? "no error") should contain \(expected)")
        }

        var huge = Self.descriptor.encoded()
        huge.replaceSubrange(28..<36, with: [UInt8](repeating: 0xFF, count: 8))
        #expect(Self.decodeError(huge)?.message.contains("byte offset 28: tokenCount 18446744073709551615 exceeds") == true)

        // Each field in range, but one slice would be 4096·65536·65536·2·2 bytes.
        let absurd = KVSequenceDescriptor(
            layout: KVCacheLayout(layers: 1, kvHeads: 4096, headDim: 65_536, blockSize: 65_536), tokenCount: 1)
        let slice = Self.decodeError(absurd.encoded())
        #expect(slice?.code == .malformedKVDescriptor)
        #expect(slice?.message.contains("layer-block slice would be") == true)

        var notUTF8 = Self.descriptor.encoded()
        notUTF8[40] = 0xFF
        #expect(Self.decodeError(notUTF8)?.message.contains("byte offset 40: fingerprint is not valid UTF-8") == true)
    }

    @Test("every truncation and any trailing bytes are refused")
    func truncationAndTrailing() {
        let bytes = Self.descriptor.encoded()
        for length in 0..<bytes.count {
            let error = Self.decodeError(Array(bytes[..<length]))
            #expect(error?.code == .malformedKVDescriptor)
            #expect(error?.message.contains("truncated") == true, "length \(length): \(error?.message ?? "no error")")
        }
        let trailing = Self.decodeError(bytes + [0])
        #expect(trailing?.message == "KV descriptor byte offset \(bytes.count): 1 unexpected bytes after the header")
    }

    @Test("random bytes never crash the decoder")
    func randomBytes() {
        var rng = Xoshiro256StarStar(seed: 3)
        let valid = Self.descriptor.encoded()
        for _ in 0..<2000 {
            var bytes = valid
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if let decoded = try? KVSequenceDescriptor(decoding: bytes) {
                #expect(decoded.encoded() == bytes)
            }
        }
    }
}
