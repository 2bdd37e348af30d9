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

    @Test("Combining the checksums of two parts gives the checksum of the whole")
    func combine() {
        let a = Array("hello, ".utf8), b = Array("world".utf8)
        #expect(CRC32C.combine(CRC32C.checksum(a), CRC32C.checksum(b), length: b.count) == CRC32C.checksum(a + b))
    }
}
