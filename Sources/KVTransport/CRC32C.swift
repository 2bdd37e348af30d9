internal import CKernels

/// CRC32C (Castagnoli, polynomial 0x1EDC6F41 reflected = 0x82F63B78), as used by iSCSI, ext4 and gRPC.
///
/// `update` runs the C kernel `bk_crc32c`: the SSE4.2 `crc32` instruction over three interleaved
/// streams when the CPU has it (tens of GB/s), portable slicing-by-8 otherwise. `swiftChecksum` is the
/// same algorithm in plain Swift (slicing-by-8, three streams joined with `combine`), kept as the twin
/// the tests compare the kernel with. Start with `CRC32C()`, `update` with each piece in order, read
/// `value`. Checksumming a buffer in pieces gives the same value as checksumming it at once.
public struct CRC32C: Sendable, Equatable {
    private var crc: UInt32 = 0

    public init() {}

    /// The checksum of the bytes seen so far.
    public var value: UInt32 { crc }

    /// Whether `update` uses the CPU's CRC32C instruction (SSE4.2) rather than table lookups.
    public static var usesHardware: Bool { bk_crc32c_hardware() != 0 }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32C()
        crc.update(bytes)
        return crc.value
    }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        crc = bk_crc32c(crc, base, bytes.count)
    }

    /// Copies `source` to `destination` (same size, not overlapping) and adds the bytes to the checksum,
    /// reading them once: the same result as `copyMemory` then `update`.
    public mutating func updateCopying(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count == source.count, "CRC32C copy between buffers of different sizes")
        guard let from = source.baseAddress, let to = destination.baseAddress, source.count > 0 else { return }
        crc = bk_crc32c_copy(crc, to, from, source.count)
    }

    /// `updateCopying` with the portable C kernel, whatever the CPU (for tests).
    public mutating func updateCopyingPortably(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count == source.count, "CRC32C copy between buffers of different sizes")
        guard let from = source.baseAddress, let to = destination.baseAddress, source.count > 0 else { return }
        crc = bk_crc32c_copy_portable(crc, to, from, source.count)
    }

    /// The checksum of `bytes` with the portable C kernel (slicing-by-8), whatever the CPU: the fallback
    /// `update` takes on CPUs without SSE4.2, exposed so tests can compare it on any machine.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return bk_crc32c_portable(0, base, bytes.count)
    }

    /// The checksum of `bytes` computed in Swift (slicing-by-8, three interleaved streams for large
    /// buffers): the reference twin of the C kernel.
    public static func swiftChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var state: UInt32 = 0xFFFF_FFFF
        swiftUpdate(&state, bytes)
        return ~state
    }

    private static func swiftUpdate(_ state: inout UInt32, _ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        CRC32CTables.shared.withUnsafeBufferPointer { tables in
            let t = tables.baseAddress!
            var count = bytes.count
            var start = base
            // Slicing-by-8 is latency-bound (each step waits for the previous CRC); three independent
            // streams over thirds of the buffer run in parallel, then are joined with `combine`.
            if count >= Self.interleaveThreshold {
                let third = (count / 3) & ~7
                var a = state, b: UInt32 = 0xFFFF_FFFF, c: UInt32 = 0xFFFF_FFFF
                var index = 0
                while index < third {
                    a = Self.step(t, a, start.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                    b = Self.step(t, b, start.loadUnaligned(fromByteOffset: third + index, as: UInt64.self))
                    c = Self.step(t, c, start.loadUnaligned(fromByteOffset: 2 * third + index, as: UInt64.self))
                    index &+= 8
                }
                let joined = Self.combine(Self.combine(~a, ~b, length: third), ~c, length: third)
                state = ~joined
                start += 3 * third
                count -= 3 * third
            }
            var crc = state
            var index = 0
            while index + 8 <= count {
                crc = Self.step(t, crc, start.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                index &+= 8
            }
            while index < count {
                let byte = start.load(fromByteOffset: index, as: UInt8.self)
                crc = t[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc &>> 8)
                index &+= 1
            }
            state = crc
        }
    }

    static let interleaveThreshold = 3 * 4096

    @inline(__always)
    private static func step(_ t: UnsafePointer<UInt32>, _ crc: UInt32, _ raw: UInt64) -> UInt32 {
        let word = UInt64(littleEndian: raw)
        let low = UInt32(truncatingIfNeeded: word) ^ crc
        let high = UInt32(truncatingIfNeeded: word &>> 32)
        return t[7 &* 256 &+ Int(low & 0xFF)]
            ^ t[6 &* 256 &+ Int((low &>> 8) & 0xFF)]
            ^ t[5 &* 256 &+ Int((low &>> 16) & 0xFF)]
            ^ t[4 &* 256 &+ Int(low &>> 24)]
            ^ t[3 &* 256 &+ Int(high & 0xFF)]
            ^ t[2 &* 256 &+ Int((high &>> 8) & 0xFF)]
            ^ t[1 &* 256 &+ Int((high &>> 16) & 0xFF)]
            ^ t[Int(high &>> 24)]
    }

    /// The checksum of A followed by B, from the checksum of A, that of B and B's length (as zlib's
    /// `crc32_combine`: multiply A's by x^(8·length) modulo the polynomial).
    public static func combine(_ first: UInt32, _ second: UInt32, length: Int) -> UInt32 {
        multiplyModP(powerOfX(bits: UInt64(length) &* 8), first) ^ second
    }

    /// a·b modulo the (reflected) polynomial.
    private static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var m: UInt32 = 1 << 31
        var p: UInt32 = 0
        var b = b
        while true {
            if a & m != 0 {
                p ^= b
                if a & (m &- 1) == 0 { break }
            }
            m >>= 1
            b = b & 1 != 0 ? (b >> 1) ^ 0x82F6_3B78 : b >> 1
            if m == 0 { break }
        }
        return p
    }

    /// x^n modulo the polynomial, by squaring (x^(2^k) from a table).
    private static func powerOfX(bits: UInt64) -> UInt32 {
        var p: UInt32 = 1 << 31  // x^0
        var n = bits
        var k = 0
        while n != 0 {
            if n & 1 != 0 { p = multiplyModP(powersOfTwo[k & 31], p) }
            n >>= 1
            k += 1
        }
        return p
    }

    /// x^(2^k) modulo the polynomial, k = 0…31.
    private static let powersOfTwo: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 32)
        var p: UInt32 = 1 << 30  // x^1
        table[0] = p
        for k in 1..<32 {
            p = multiplyModP(p, p)
            table[k] = p
        }
        return table
    }()

    /// Bit-at-a-time reference used by the tests to check the sliced tables.
    public static func referenceChecksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}

private enum CRC32CTables {
    /// Table k (k = 0…7) at [k*256 ..< (k+1)*256]: the CRC of a byte followed by k zero bytes.
    static let shared: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var crc = UInt32(n)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[n] = crc
        }
        for n in 0..<256 {
            var crc = tables[n]
            for k in 1..<8 {
                crc = tables[Int(crc & 0xFF)] ^ (crc >> 8)
                tables[k * 256 + n] = crc
            }
        }
        return tables
    }()
}
