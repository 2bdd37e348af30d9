/// Exact UTF-8 bytes as a dictionary key. Token spellings must be compared byte for byte: `String`
/// equality is canonical equivalence, which would merge distinct tokens such as "é" and "e\u{301}".
struct ByteString: Hashable, Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
}
