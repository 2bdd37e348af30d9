import KVTransport
import Testing

@Suite("CRC32C")
struct CRC32CTests {
    @Test("The check value of \"123456789\" is e3069283")
    func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.referenceChecksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test("32 zero bytes hash to the RFC 3720 value 8a9136aa")
    func zeros() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    }

    @Test("Slicing-by-8 matches the bit-at-a-time reference at every length and alignment")
    func matchesReference() {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099] {
            let bytes = (0..<length + 3).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for start in 0..<3 {
                let slice = Array(bytes[start..<start + length])
                #expect(CRC32C.checksum(slice) == CRC32C.referenceChecksum(slice), "length \(length) start \(start)")
            }
        }
    }

    @Test("Checksumming in pieces equals checksumming at once")
    func incremental() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var crc = CRC32C()
        crc.update(Array(bytes[0..<3]))
        crc.update(Array(bytes[3..<4000]))
        crc.update(Array(bytes[4000...]))
        #expect(crc.value == CRC32C.checksum(bytes))
    }

    @Test("A single flipped bit changes the checksum")
    func flippedBit() {
        var bytes = [UInt8](repeating: 0x5A, count: 4096)
        let before = CRC32C.checksum(bytes)
        bytes[2049] ^= 0x10
        #expect(CRC32C.checksum(bytes) != before)
    }
}

@Suite("CRC32C on large buffers")
struct CRC32CLargeTests {
    @Test("Interleaved streams match the reference on large odd-sized buffers")
    func interleaved() {
        var generator = SystemRandomNumberGenerator()
        for length in [12_288, 12_289, 65_543, 200_003] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(CRC32C.checksum(bytes) == CRC32C.referenceChecksum(bytes), "length \(length)")
            var pieces = CRC32C()
            pieces.update(Array(bytes[0..<5]))
            pieces.update(Array(bytes[5...]))
            #expect(pieces.value == CRC32C.referenceChecksum(bytes), "length \(length) in pieces")
        }
    }

    @Test("The C kernel, its portable fallback and the Swift twin agree on random buffers at every alignment")
    func kernelMatchesSwiftTwin() {
        var generator = SystemRandomNumberGenerator()
        // Around the kernel's block boundaries (3 × 256 and 3 × 8192 bytes) and the Swift twin's (3 × 4096).
        let lengths = [0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 255, 256, 257, 767, 768, 769, 1023, 4097, 12_287, 12_288,
                       12_289, 24_575, 24_576, 24_577, 49_153, 65_543, 100_003, (1 << 20) + 13]
        let storage = (0..<(lengths.max()! + 16)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        storage.withUnsafeBytes { all in
            for length in lengths {
                for start in 0..<9 {
                    let bytes = UnsafeRawBufferPointer(rebasing: all[start..<start + length])
                    let swift = CRC32C.swiftChecksum(bytes)
                    #expect(CRC32C.checksum(bytes) == swift, "length \(length) start \(start)")
                    #expect(CRC32C.portableChecksum(bytes) == swift, "portable, length \(length) start \(start)")
                }
            }
        }
        let small = Array(storage[3..<1_003])
        #expect(small.withUnsafeBytes { CRC32C.swiftChecksum($0) } == CRC32C.referenceChecksum(small))
    }

    @Test("The C kernel gives the same checksum in pieces cut at random points")
    func kernelInRandomPieces() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<300_001).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let whole = bytes.withUnsafeBytes { CRC32C.swiftChecksum($0) }
        for _ in 0..<20 {
            var cuts = (0..<Int.random(in: 1...6, using: &generator)).map { _ in Int.random(in: 0...bytes.count, using: &generator) }
            cuts = ([0] + cuts + [bytes.count]).sorted()
            var crc = CRC32C()
            bytes.withUnsafeBytes { all in
                for (from, to) in zip(cuts, cuts.dropFirst()) { crc.update(UnsafeRawBufferPointer(rebasing: all[from..<to])) }
            }
            #expect(crc.value == whole, "cuts \(cuts)")
        }
    }

    @Test("Copying while checksumming copies exactly and gives the Swift twin's checksum")
    func copyingKernel() {
        var generator = SystemRandomNumberGenerator()
        let source = (0..<(3 * 8192 * 2 + 300)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        source.withUnsafeBytes { all in
            for length in [1, 7, 8, 9, 767, 24_575, 24_577, 3 * 8192 * 2 + 5] {
                for (start, target) in [(0, 0), (1, 0), (3, 5), (7, 1)] {
                    let bytes = UnsafeRawBufferPointer(rebasing: all[start..<start + length])
                    for portable in [false, true] {
                        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: length + 16, alignment: 8)
                        defer { destination.deallocate() }
                        destination.initializeMemory(as: UInt8.self, repeating: 0xEE)
                        let window = UnsafeMutableRawBufferPointer(rebasing: destination[target..<target + length])
                        var crc = CRC32C()
                        crc.update(UnsafeRawBufferPointer(rebasing: all[0..<3]))  // continues a running checksum
                        if portable { crc.updateCopyingPortably(bytes, to: window) } else { crc.updateCopying(bytes, to: window) }
                        var expected = CRC32C()
                        expected.update(UnsafeRawBufferPointer(rebasing: all[0..<3]))
                        expected.update(bytes)
                        let context = "length \(length) from \(start) to \(target), portable \(portable)"
                        #expect(crc.value == expected.value, "\(context)")
                        #expect(Array(UnsafeRawBufferPointer(window)) == Array(bytes), "\(context)")
                        #expect(destination[0..<target].allSatisfy { $0 == 0xEE }, "\(context): wrote before the window")
                        #expect(destination[(target + length)...].allSatisfy { $0 == 0xEE }, "\(context): wrote past the window")
                    }
                }
            }
        }
    }

    #if arch(x86_64)
    @Test("On x86-64 the kernel uses the SSE4.2 CRC32C instruction")
    func usesHardware() {
        #expect(CRC32C.usesHardware)
    }
    #endif

    @Test("Combining the checksums of two parts gives the checksum of the whole")
    func combine() {
        let a = Array("hello, ".utf8), b = Array("world".utf8)
        #expect(CRC32C.combine(CRC32C.checksum(a), CRC32C.checksum(b), length: b.count) == CRC32C.checksum(a + b))
    }
}
