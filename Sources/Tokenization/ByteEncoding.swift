/// GPT-2's reversible byte ↔ Unicode mapping, as byte-level BPE vocabularies spell their tokens.
///
/// Printable Latin-1 bytes (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) stand for themselves; the other 68 bytes
/// (controls, space, DEL, NBSP, soft hyphen...) are shifted to U+0100 and up in byte order, so a space is
/// `Ġ` (U+0120) and a newline `Ċ` (U+010A). Every token text of a byte-level vocabulary is a string over
/// these 256 characters.
enum ByteEncoding {
    /// The scalar that stands for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var shifted: UInt32 = 0
        for byte in 0..<256 {
            if isPrintable(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = 256 + shifted
                shifted += 1
            }
        }
        return table
    }()

    /// The byte each mapped scalar stands for, indexed by scalar value (U+0000...U+0143); -1 if none.
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in scalarForByte.enumerated() {
            table[Int(scalar)] = Int16(byte)
        }
        return table
    }()

    /// The UTF-8 encoding of each byte's scalar: what the vocabulary uses to spell that byte.
    static let utf8ForByte: [[UInt8]] = scalarForByte.map { Array(String(Unicode.Scalar($0)!).utf8) }

    private static func isPrintable(_ byte: Int) -> Bool {
        (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
    }

    /// The vocabulary spelling of raw bytes.
    static func encode<S: Sequence>(_ bytes: S) -> [UInt8] where S.Element == UInt8 {
        var result: [UInt8] = []
        for byte in bytes { result.append(contentsOf: utf8ForByte[Int(byte)]) }
        return result
    }

    /// The raw bytes a vocabulary spelling stands for, as llama.cpp's `llama_decode_text` produces them:
    /// a scalar outside the mapping becomes the literal text `[UNK_BYTE_0x…<token text>]`.
    static func decode(_ text: String) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            let value = Int(scalar.value)
            if value < byteForScalar.count, byteForScalar[value] >= 0 {
                result.append(UInt8(byteForScalar[value]))
            } else {
                result.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for byte in String(scalar).utf8 {
                    result.append(contentsOf: Array(hex2(byte).utf8))
                }
                result.append(contentsOf: Array(text.utf8))
                result.append(UInt8(ascii: "]"))
            }
        }
        return result
    }

    private static func hex2(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
    }
}
