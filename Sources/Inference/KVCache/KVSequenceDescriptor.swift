/// Describes one exported sequence: the layout of its KV and how many tokens it holds. Sent ahead of the
/// layer data so the receiver can check compatibility and allocate blocks before any bytes arrive.
///
/// Binary form (`encoded()`), all integers little-endian:
///
/// | offset | size | field                                           |
/// |-------:|-----:|-------------------------------------------------|
/// |      0 |    4 | magic `"BKV1"` (ASCII)                          |
/// |      4 |    4 | version, UInt32 (currently 1)                   |
/// |      8 |    4 | layers, UInt32                                  |
/// |     12 |    4 | kvHeads, UInt32                                 |
/// |     16 |    4 | headDim, UInt32                                 |
/// |     20 |    4 | blockSize, UInt32                               |
/// |     24 |    4 | dataType, UInt32 (0 = f16, 1 = f32)             |
/// |     28 |    8 | tokenCount, UInt64                              |
/// |     36 |    4 | fingerprint length n, UInt32                    |
/// |     40 |    n | model fingerprint, UTF-8                        |
///
/// Each layer's data then follows as `layerByteCount` bytes: the sequence's blocks in block-table order,
/// each block the (layer, block) slice `K[kvHead][slot][headDim]` then `V[kvHead][slot][headDim]`. Slots past
/// `tokenCount` in the last block are unspecified.
public struct KVSequenceDescriptor: Sendable, Equatable, Hashable, Codable {
    public var layout: KVCacheLayout
    public var tokenCount: Int

    /// The four magic bytes that open the header.
    public static let magic: [UInt8] = Array("BKV1".utf8)
    /// The header version this code writes and the only one it reads.
    public static let currentVersion: UInt32 = 1
    /// Size of the header before the fingerprint bytes.
    public static let fixedHeaderSize = 40
    /// The most tokens a descriptor may announce (2^32), to bound what a receiver allocates.
    public static let maximumTokenCount = 1 << 32

    public init(layout: KVCacheLayout, tokenCount: Int) {
        self.layout = layout
        self.tokenCount = tokenCount
    }

    /// Blocks the sequence occupies.
    public var blockCount: Int { layout.blocks(forTokens: tokenCount) }

    /// Bytes of one layer's export: `blockCount * layout.layerBlockBytes`.
    public var layerByteCount: Int { blockCount * layout.layerBlockBytes }

    /// Bytes of all layers' exports together.
    public var totalByteCount: Int { layerByteCount * layout.layers }

    /// The binary header described in the type's documentation.
    public func encoded() -> [UInt8] {
        let fingerprint = Array(layout.modelFingerprint.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(Self.fixedHeaderSize + fingerprint.count)
        out += Self.magic
        Self.append(Self.currentVersion, to: &out)
        Self.append(UInt32(truncatingIfNeeded: layout.layers), to: &out)
        Self.append(UInt32(truncatingIfNeeded: layout.kvHeads), to: &out)
        Self.append(UInt32(truncatingIfNeeded: layout.headDim), to: &out)
        Self.append(UInt32(truncatingIfNeeded: layout.blockSize), to: &out)
        Self.append(layout.dataType.wireCode, to: &out)
        Self.append(UInt64(truncatingIfNeeded: tokenCount), to: &out)
        Self.append(UInt32(truncatingIfNeeded: fingerprint.count), to: &out)
        out += fingerprint
        return out
    }

    /// Decodes and validates a header made by `encoded()`. Errors (code `.malformedKVDescriptor`) name the byte
    /// offset of the offending field: bad magic, unknown version, truncation, trailing bytes, values out of range
    /// or a fingerprint that is not UTF-8.
    public init(decoding bytes: [UInt8]) throws(InferenceError) {
        var reader = HeaderReader(bytes: bytes)
        let magic = try reader.bytes(4, field: "magic")
        guard magic == Self.magic else {
            throw Self.malformed("bad magic \(magic.map { String($0, radix: 16) }) (expected \"BKV1\")", at: 0)
        }
        let version = try reader.uint32(field: "version")
        guard version == Self.currentVersion else {
            throw Self.malformed("unsupported version \(version) (this build reads version \(Self.currentVersion))", at: 4)
        }
        let layers = try reader.bounded(field: "layers", 1...KVCacheLayout.maximumLayers)
        let kvHeads = try reader.bounded(field: "kvHeads", 1...KVCacheLayout.maximumKVHeads)
        let headDim = try reader.bounded(field: "headDim", 1...KVCacheLayout.maximumHeadDim)
        let blockSize = try reader.bounded(field: "blockSize", 1...KVCacheLayout.maximumBlockSize)
        let typeOffset = reader.offset
        let typeCode = try reader.uint32(field: "dataType")
        guard let dataType = KVDataType(wireCode: typeCode) else {
            throw Self.malformed("unknown dataType code \(typeCode) (0 = f16, 1 = f32)", at: typeOffset)
        }
        let countOffset = reader.offset
        let tokenCount = try reader.uint64(field: "tokenCount")
        guard tokenCount <= UInt64(Self.maximumTokenCount) else {
            throw Self.malformed("tokenCount \(tokenCount) exceeds the maximum \(Self.maximumTokenCount)", at: countOffset)
        }
        let fingerprintLength = try reader.bounded(field: "fingerprint length", 0...KVCacheLayout.maximumFingerprintBytes)
        let fingerprintOffset = reader.offset
        let fingerprintBytes = try reader.bytes(fingerprintLength, field: "fingerprint")
        guard let fingerprint = String(validating: fingerprintBytes, as: UTF8.self) else {
            throw Self.malformed("fingerprint is not valid UTF-8", at: fingerprintOffset)
        }
        guard reader.offset == bytes.count else {
            throw Self.malformed("\(bytes.count - reader.offset) unexpected bytes after the header", at: reader.offset)
        }
        let layout = KVCacheLayout(
            layers: layers, kvHeads: kvHeads, headDim: headDim, blockSize: blockSize, dataType: dataType,
            modelFingerprint: fingerprint)
        do {
            try layout.validate()
        } catch {
            throw Self.malformed(error.message, at: 8, cause: error)
        }
        self.init(layout: layout, tokenCount: Int(tokenCount))
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    fileprivate static func malformed(_ message: String, at offset: Int, cause: InferenceError? = nil) -> InferenceError {
        InferenceError(.malformedKVDescriptor, "KV descriptor byte offset \(offset): \(message)", cause: cause)
    }
}

/// Bounds-checked little-endian reads over the header bytes.
private struct HeaderReader {
    let bytes: [UInt8]
    var offset = 0

    mutating func bytes(_ count: Int, field: String) throws(InferenceError) -> [UInt8] {
        guard count <= bytes.count - offset else {
            throw KVSequenceDescriptor.malformed(
                "truncated: \(field) needs \(count) bytes, only \(bytes.count - offset) left", at: offset)
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func uint32(field: String) throws(InferenceError) -> UInt32 {
        let raw = try bytes(4, field: field)
        return raw.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func uint64(field: String) throws(InferenceError) -> UInt64 {
        let raw = try bytes(8, field: field)
        return raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func bounded(field: String, _ range: ClosedRange<Int>) throws(InferenceError) -> Int {
        let at = offset
        let value = try uint32(field: field)
        guard range.contains(Int(value)) else {
            throw KVSequenceDescriptor.malformed(
                "\(field) \(value) out of range \(range.lowerBound)...\(range.upperBound)", at: at)
        }
        return Int(value)
    }
}

extension InferenceError.Code {
    /// A KV sequence descriptor header could not be decoded (the message names the byte offset).
    public static let malformedKVDescriptor = InferenceError.Code("malformed KV descriptor")
}
