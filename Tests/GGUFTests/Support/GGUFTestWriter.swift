import GGUF

/// A tensor to write into a synthetic GGUF file. Fields are raw so tests can write invalid files.
struct TestTensor {
    var name: String
    var dimensions: [UInt64]
    var typeID: UInt32
    /// Offset relative to the data section; nil places the tensor after the previous one, aligned.
    var offset: UInt64? = nil
    /// The tensor's bytes; nil writes a deterministic pattern of the size the type implies.
    var data: [UInt8]? = nil

    init(_ name: String, _ dimensions: [UInt64], _ type: GGMLType, offset: UInt64? = nil, data: [UInt8]? = nil) {
        self.init(name, dimensions, typeID: type.ggmlID, offset: offset, data: data)
    }

    init(_ name: String, _ dimensions: [UInt64], typeID: UInt32, offset: UInt64? = nil, data: [UInt8]? = nil) {
        self.name = name
        self.dimensions = dimensions
        self.typeID = typeID
        self.offset = offset
        self.data = data
    }

    /// Bytes the type implies, or the data's size when the type is unknown or the size would overflow.
    var impliedByteCount: Int {
        guard let type = GGMLType(ggmlID: typeID) else { return data?.count ?? 0 }
        var elements = 1
        for d in dimensions {
            let (p, o) = elements.multipliedReportingOverflow(by: Int(truncatingIfNeeded: d))
            if o || d > UInt64(Int.max) || d == 0 { return data?.count ?? 0 }
            elements = p
        }
        let (bytes, overflow) = (elements / type.blockElements).multipliedReportingOverflow(by: type.blockBytes)
        return overflow ? data?.count ?? 0 : bytes
    }
}

/// Where the writer put each field, so tests can point at offsets and the fuzzer at length fields.
struct TestLayout {
    struct Entry { var keyOffset: Int; var typeOffset: Int; var valueOffset: Int }
    struct Tensor {
        var infoOffset: Int; var rankOffset: Int; var dimensionOffsets: [Int]; var typeOffset: Int
        var offsetFieldOffset: Int; var dataOffset: Int; var byteCount: Int
    }
    var entries: [Entry] = []
    var tensors: [Tensor] = []
    var dataOffset = 0
    /// Offsets of every u64 length or count field (header counts, string lengths, array lengths).
    var lengthFields: [Int] = [8, 16]
}

/// Builds GGUF images for tests: all value types, nested arrays, v2/v3, custom alignment, raw fields.
struct GGUFTestWriter {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    /// When set, written as a uint32 `general.alignment` first and used for padding.
    var alignment: Int? = nil
    var metadata: [(key: String, value: GGUFValue)] = []
    /// Entries written verbatim after `metadata`: key, value type id, value bytes.
    var rawMetadata: [(key: String, type: UInt32, payload: [UInt8])] = []
    var tensors: [TestTensor] = []

    func build() -> (bytes: [UInt8], layout: TestLayout) {
        var out: [UInt8] = []
        var layout = TestLayout()
        out += magic
        Self.append(version, to: &out)
        let entries = (alignment.map { [(key: "general.alignment", value: GGUFValue.uint32(UInt32($0)))] } ?? [])
            + metadata
        Self.append(UInt64(tensors.count), to: &out)
        Self.append(UInt64(entries.count + rawMetadata.count), to: &out)

        for (key, value) in entries {
            let keyOffset = out.count
            Self.appendString(key, to: &out, layout: &layout)
            let typeOffset = out.count
            Self.append(Self.typeID(of: value), to: &out)
            let valueOffset = out.count
            Self.appendValue(value, to: &out, layout: &layout)
            layout.entries.append(.init(keyOffset: keyOffset, typeOffset: typeOffset, valueOffset: valueOffset))
        }
        for (key, type, payload) in rawMetadata {
            let keyOffset = out.count
            Self.appendString(key, to: &out, layout: &layout)
            let typeOffset = out.count
            Self.append(type, to: &out)
            layout.entries.append(.init(keyOffset: keyOffset, typeOffset: typeOffset, valueOffset: out.count))
            out += payload
        }

        let align = alignment ?? 32
        var next = 0
        var placed: [(offset: Int, bytes: [UInt8])] = []
        for (index, tensor) in tensors.enumerated() {
            let infoOffset = out.count
            Self.appendString(tensor.name, to: &out, layout: &layout)
            let rankOffset = out.count
            Self.append(UInt32(tensor.dimensions.count), to: &out)
            var dimensionOffsets: [Int] = []
            for d in tensor.dimensions {
                dimensionOffsets.append(out.count)
                Self.append(d, to: &out)
            }
            let typeOffset = out.count
            Self.append(tensor.typeID, to: &out)
            let bytes = tensor.data ?? (0 ..< tensor.impliedByteCount).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            let relative = tensor.offset ?? UInt64(next)
            let offsetFieldOffset = out.count
            Self.append(relative, to: &out)
            if tensor.offset == nil {
                next = (next + bytes.count + align - 1) / align * align
            }
            placed.append((Int(clamping: relative), bytes))
            layout.tensors.append(.init(
                infoOffset: infoOffset, rankOffset: rankOffset, dimensionOffsets: dimensionOffsets,
                typeOffset: typeOffset, offsetFieldOffset: offsetFieldOffset, dataOffset: 0, byteCount: bytes.count
            ))
        }
        while out.count % align != 0 { out.append(0) }
        layout.dataOffset = out.count
        // Tensors with explicit offsets far past the data are not written (tests of offsets past the end).
        for (index, (offset, bytes)) in placed.enumerated() where offset < 1 << 20 {
            let start = layout.dataOffset + offset
            if out.count < start + bytes.count { out += [UInt8](repeating: 0, count: start + bytes.count - out.count) }
            out.replaceSubrange(start ..< start + bytes.count, with: bytes)
            layout.tensors[index].dataOffset = start
        }
        return (out, layout)
    }

    static func typeID(of value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: 0
        case .int8: 1
        case .uint16: 2
        case .int16: 3
        case .uint32: 4
        case .int32: 5
        case .float32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .uint64: 10
        case .int64: 11
        case .float64: 12
        }
    }

    static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    static func appendString(_ string: String, to out: inout [UInt8], layout: inout TestLayout) {
        layout.lengthFields.append(out.count)
        append(UInt64(string.utf8.count), to: &out)
        out += Array(string.utf8)
    }

    static func appendValue(_ value: GGUFValue, to out: inout [UInt8], layout: inout TestLayout) {
        switch value {
        case .uint8(let v): append(v, to: &out)
        case .int8(let v): append(v, to: &out)
        case .uint16(let v): append(v, to: &out)
        case .int16(let v): append(v, to: &out)
        case .uint32(let v): append(v, to: &out)
        case .int32(let v): append(v, to: &out)
        case .float32(let v): append(v.bitPattern, to: &out)
        case .bool(let v): out.append(v ? 1 : 0)
        case .string(let v): appendString(v, to: &out, layout: &layout)
        case .uint64(let v): append(v, to: &out)
        case .int64(let v): append(v, to: &out)
        case .float64(let v): append(v.bitPattern, to: &out)
        case .array(let elements):
            precondition(Set(elements.map(typeID(of:))).count <= 1, "GGUF arrays are homogeneous")
            append(elements.first.map(typeID(of:)) ?? 0, to: &out)
            layout.lengthFields.append(out.count)
            append(UInt64(elements.count), to: &out)
            for element in elements { appendValue(element, to: &out, layout: &layout) }
        }
    }
}

extension Array where Element == UInt8 {
    /// A copy with `value` written little-endian at `offset`.
    func patched<T: FixedWidthInteger>(_ value: T, at offset: Int) -> [UInt8] {
        var copy = self
        Swift.withUnsafeBytes(of: value.littleEndian) { copy.replaceSubrange(offset ..< offset + $0.count, with: $0) }
        return copy
    }
}
