/// What the parser extracts from a GGUF header (the layout is described in GGUFFile.swift).
struct GGUFHeader {
    var version: UInt32
    var alignment: Int
    var dataOffset: Int
    var metadataKeys: [String]
    var metadata: [String: GGUFValue]
    var tensors: [GGUFTensorInfo]
    var tensorIndex: [String: Int]
}

/// A bounds-checked, single-pass reader over a GGUF image. Never reads outside `buffer`, never allocates
/// for a count before checking that the bytes left could hold that many items, and never overflows.
struct GGUFParser {
    /// Alignment used when `general.alignment` is absent.
    static let defaultAlignment = 32
    /// Deepest array-of-array nesting accepted; deeper files are refused rather than risk the stack.
    static let maximumArrayDepth = 8
    /// ggml's limit on dimensions per tensor.
    static let maximumDimensions = 4
    /// Most array elements accepted in one file's metadata. Each element costs tens of bytes in memory
    /// against one to eight in the file, so this caps memory at well under a GiB whatever the file size;
    /// real vocabularies (tokens, scores, types, merges) use under a million.
    static let maximumArrayElements = 1 << 24
    /// The GGUF specification's limit on key length.
    static let maximumKeyLength = 65_535

    private let buffer: UnsafeRawBufferPointer
    private let name: String
    private var position = 0
    private var arrayElementBudget = maximumArrayElements

    private init(buffer: UnsafeRawBufferPointer, name: String) {
        self.buffer = buffer
        self.name = name
    }

    /// Parses a whole GGUF image; `maximumArrayElements` is lowered only by tests.
    static func parse(
        _ buffer: UnsafeRawBufferPointer, name: String, maximumArrayElements: Int = maximumArrayElements
    ) throws(GGUFError) -> GGUFHeader {
        var parser = GGUFParser(buffer: buffer, name: name)
        parser.arrayElementBudget = maximumArrayElements
        return try parser.parse()
    }

    private var remaining: Int { buffer.count - position }

    private func failure(_ code: GGUFError.Code, _ what: String, at offset: Int) -> GGUFError {
        GGUFError(code, "\(name), offset \(offset): \(what)", offset: offset)
    }

    // MARK: Primitive reads

    private mutating func require(_ count: Int, for what: String) throws(GGUFError) {
        guard count <= remaining else {
            throw failure(
                .truncated,
                "file ends after \(buffer.count) bytes, inside \(what) (\(count) bytes needed, \(remaining) left)",
                at: position
            )
        }
    }

    private mutating func read<T: FixedWidthInteger & BitwiseCopyable>(
        _: T.Type, _ what: String
    ) throws(GGUFError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, for: what)
        let value = T(littleEndian: buffer.loadUnaligned(fromByteOffset: position, as: T.self))
        position += size
        return value
    }

    /// Reads a GGUF string: u64 length, then that many bytes. Invalid UTF-8 is repaired (U+FFFD), as
    /// llama.cpp does not validate it either.
    private mutating func readString(_ what: String) throws(GGUFError) -> String {
        let start = position
        let length = try read(UInt64.self, "the length of \(what)")
        guard length <= UInt64(remaining) else {
            throw failure(
                .truncated,
                "\(what) claims \(length) bytes but only \(remaining) are left in the file", at: start
            )
        }
        let count = Int(length)
        let bytes = UnsafeRawBufferPointer(rebasing: buffer[position ..< position + count])
        position += count
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checks that `count` items of at least `minimumSize` bytes each fit in the bytes left, before
    /// anything is allocated for them.
    private func checkCount(
        _ count: UInt64, minimumSize: Int, _ what: String, at offset: Int
    ) throws(GGUFError) -> Int {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: UInt64(minimumSize))
        guard !overflow, bytes <= UInt64(remaining) else {
            throw failure(
                .limitExceeded,
                "\(what) \(count) cannot fit in the \(remaining) bytes left in the file (truncated or corrupt)",
                at: offset
            )
        }
        return Int(count)
    }

    // MARK: Header

    private mutating func parse() throws(GGUFError) -> GGUFHeader {
        try require(4, for: "the magic number")
        let magic = Array(buffer[0 ..< 4])
        guard magic == Array("GGUF".utf8) else {
            let hex = magic.map { String($0, radix: 16, uppercase: true) }.map { $0.count == 1 ? "0" + $0 : $0 }
            throw failure(.badMagic, "not a GGUF file: magic is 0x\(hex.joined()), expected \"GGUF\"", at: 0)
        }
        position = 4

        let version = try read(UInt32.self, "the version")
        guard version == 2 || version == 3 else {
            let detail = version.byteSwapped == 2 || version.byteSwapped == 3
                ? "big-endian GGUF files are not supported"
                : "GGUF version \(version) is not supported (only versions 2 and 3)"
            throw failure(.unsupportedVersion, detail, at: 4)
        }

        let tensorCountOffset = position
        let rawTensorCount = try read(UInt64.self, "the tensor count")
        let kvCountOffset = position
        let rawKVCount = try read(UInt64.self, "the metadata count")
        // Smallest metadata pair: key length + 1 key byte + value type + 1 value byte. Smallest tensor info:
        // name length + dimension count + one dimension + type + offset.
        let kvCount = try checkCount(rawKVCount, minimumSize: 8 + 1 + 4 + 1, "metadata count", at: kvCountOffset)
        _ = try checkCount(rawTensorCount, minimumSize: 8 + 4 + 8 + 4 + 8, "tensor count", at: tensorCountOffset)

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(kvCount)
        metadata.reserveCapacity(kvCount)
        var alignmentValueOffset = 0
        for _ in 0 ..< kvCount {
            let keyOffset = position
            let key = try readString("a metadata key")
            guard !key.isEmpty else { throw failure(.invalidValue, "empty metadata key", at: keyOffset) }
            guard key.utf8.count <= Self.maximumKeyLength else {
                throw failure(.limitExceeded, "metadata key longer than \(Self.maximumKeyLength) bytes", at: keyOffset)
            }
            guard metadata[key] == nil else {
                throw failure(.invalidValue, "duplicate metadata key \"\(key)\"", at: keyOffset)
            }
            let typeOffset = position
            let type = try read(UInt32.self, "the type of metadata key \"\(key)\"")
            if key == "general.alignment" { alignmentValueOffset = position }
            let value = try readValue(type: type, typeOffset: typeOffset, key: key, depth: 0)
            keys.append(key)
            metadata[key] = value
        }

        // The tensor count was checked against the bytes left before the metadata; check it again now
        // that fewer are left, before reserving for it.
        let tensorCount = try checkCount(
            rawTensorCount, minimumSize: 8 + 4 + 8 + 4 + 8, "tensor count", at: tensorCountOffset
        )

        var alignment = Self.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard let a = value.integerValue, a > 0, a & (a - 1) == 0 else {
                throw failure(
                    .invalidValue,
                    "general.alignment must be a nonzero power of two, found \(value.typeName) \(Self.describe(value))",
                    at: alignmentValueOffset
                )
            }
            alignment = a
        }

        let infos = try readTensorInfos(count: tensorCount, alignment: alignment)

        // The data section starts at the next multiple of the alignment after the tensor infos.
        let (padded, paddedOverflow) = position.addingReportingOverflow(alignment - 1)
        guard !paddedOverflow else {
            throw failure(.limitExceeded, "alignment \(alignment) overflows the data offset", at: position)
        }
        let dataOffset = padded & ~(alignment - 1)
        if !infos.isEmpty && dataOffset > buffer.count {
            throw failure(
                .truncated,
                "tensor data section would start at \(dataOffset), past the end of the file (\(buffer.count) bytes)",
                at: position
            )
        }

        let tensors = try placeTensors(infos, dataOffset: dataOffset)
        var tensorIndex: [String: Int] = [:]
        tensorIndex.reserveCapacity(tensors.count)
        for (i, tensor) in tensors.enumerated() { tensorIndex[tensor.name] = i }

        return GGUFHeader(
            version: version, alignment: alignment, dataOffset: min(dataOffset, buffer.count),
            metadataKeys: keys, metadata: metadata, tensors: tensors, tensorIndex: tensorIndex
        )
    }

    // MARK: Metadata values

    /// Bytes a value of `type` occupies at least; nil for unknown types.
    private static func minimumSize(ofValueType type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: 1
        case 2, 3: 2
        case 4, 5, 6: 4
        case 10, 11, 12: 8
        case 8: 8  // the length; the bytes may be empty
        case 9: 12  // element type + count; the elements may be empty
        default: nil
        }
    }

    private mutating func readValue(
        type: UInt32, typeOffset: Int, key: String, depth: Int
    ) throws(GGUFError) -> GGUFValue {
        let what = "the value of \"\(key)\""
        switch type {
        case 0: return .uint8(try read(UInt8.self, what))
        case 1: return .int8(try read(Int8.self, what))
        case 2: return .uint16(try read(UInt16.self, what))
        case 3: return .int16(try read(Int16.self, what))
        case 4: return .uint32(try read(UInt32.self, what))
        case 5: return .int32(try read(Int32.self, what))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self, what)))
        case 7:
            let offset = position
            let byte = try read(UInt8.self, what)
            guard byte <= 1 else {
                throw failure(.invalidValue, "bool value \(byte) of \"\(key)\" is neither 0 nor 1", at: offset)
            }
            return .bool(byte == 1)
        case 8: return .string(try readString(what))
        case 9: return .array(try readArray(key: key, depth: depth))
        case 10: return .uint64(try read(UInt64.self, what))
        case 11: return .int64(try read(Int64.self, what))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self, what)))
        default:
            throw failure(.invalidValue, "unknown metadata value type \(type) for \"\(key)\"", at: typeOffset)
        }
    }

    private mutating func readArray(key: String, depth: Int) throws(GGUFError) -> [GGUFValue] {
        let typeOffset = position
        guard depth < Self.maximumArrayDepth else {
            throw failure(
                .limitExceeded, "arrays in \"\(key)\" nest deeper than \(Self.maximumArrayDepth) levels",
                at: typeOffset
            )
        }
        let elementType = try read(UInt32.self, "the element type of \"\(key)\"")
        guard let minimumSize = Self.minimumSize(ofValueType: elementType) else {
            throw failure(
                .invalidValue, "unknown array element type \(elementType) in \"\(key)\"", at: typeOffset
            )
        }
        let countOffset = position
        let rawCount = try read(UInt64.self, "the length of array \"\(key)\"")
        let count = try checkCount(rawCount, minimumSize: minimumSize, "length of array \"\(key)\"", at: countOffset)
        guard count <= arrayElementBudget else {
            throw failure(
                .limitExceeded,
                "array \"\(key)\" of \(count) elements takes the metadata past the limit on array elements "
                    + "in one file (\(Self.maximumArrayElements))",
                at: countOffset
            )
        }
        arrayElementBudget -= count
        var elements: [GGUFValue] = []
        elements.reserveCapacity(count)
        for _ in 0 ..< count {
            elements.append(try readValue(type: elementType, typeOffset: typeOffset, key: key, depth: depth + 1))
        }
        return elements
    }

    private static func describe(_ value: GGUFValue) -> String {
        switch value {
        case .string(let s): "\"\(s)\""
        case .array(let a): "of \(a.count) elements"
        default: value.integerValue.map(String.init) ?? value.floatValue.map { "\($0)" } ?? "\(value)"
        }
    }

    // MARK: Tensor infos

    /// A tensor info as stored, with the offsets of its fields for error messages.
    private struct RawTensorInfo {
        var name: String
        var dimensions: [Int]
        var type: GGMLType
        var relativeOffset: Int
        var byteCount: Int
        var infoOffset: Int
        var offsetFieldOffset: Int
    }

    private mutating func readTensorInfos(count: Int, alignment: Int) throws(GGUFError) -> [RawTensorInfo] {
        var infos: [RawTensorInfo] = []
        infos.reserveCapacity(count)
        var seen = Set<String>()
        seen.reserveCapacity(count)
        for _ in 0 ..< count {
            let infoOffset = position
            let name = try readString("a tensor name")
            guard !name.isEmpty else { throw failure(.invalidValue, "empty tensor name", at: infoOffset) }
            guard seen.insert(name).inserted else {
                throw failure(.invalidValue, "duplicate tensor name \"\(name)\"", at: infoOffset)
            }

            let rankOffset = position
            let rank = try read(UInt32.self, "the dimension count of tensor \(name)")
            guard rank >= 1 else {
                throw failure(.invalidValue, "tensor \(name) has no dimensions", at: rankOffset)
            }
            guard rank <= Self.maximumDimensions else {
                throw failure(
                    .limitExceeded,
                    "tensor \(name) has \(rank) dimensions (at most \(Self.maximumDimensions))", at: rankOffset
                )
            }
            var dimensions: [Int] = []
            dimensions.reserveCapacity(Int(rank))
            var elementCount = 1
            for axis in 0 ..< Int(rank) {
                let dimensionOffset = position
                let raw = try read(UInt64.self, "dimension \(axis) of tensor \(name)")
                guard raw > 0 else {
                    throw failure(.invalidValue, "dimension \(axis) of tensor \(name) is 0", at: dimensionOffset)
                }
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: Int(truncatingIfNeeded: raw))
                guard raw <= UInt64(Int.max), !overflow else {
                    throw failure(
                        .limitExceeded,
                        "the element count of tensor \(name) overflows at dimension \(axis) (\(raw))",
                        at: dimensionOffset
                    )
                }
                dimensions.append(Int(raw))
                elementCount = product
            }

            let typeOffset = position
            let typeID = try read(UInt32.self, "the type of tensor \(name)")
            // Any type ggml defines is placed (its block size is all the reader needs); an id it does not
            // define leaves the tensor's size unknown.
            guard let type = GGMLType(ggmlID: typeID) else {
                throw failure(
                    .unsupportedTensorType,
                    "unknown tensor type \(typeID) in tensor \(name) (not a type ggml defines)", at: typeOffset
                )
            }
            guard dimensions[0] % type.blockElements == 0 else {
                throw failure(
                    .invalidValue,
                    "row length \(dimensions[0]) of tensor \(name) is not a multiple of the \(type.name) "
                        + "block size \(type.blockElements)",
                    at: rankOffset + 4
                )
            }
            let (byteCount, sizeOverflow) = (elementCount / type.blockElements)
                .multipliedReportingOverflow(by: type.blockBytes)
            guard !sizeOverflow else {
                throw failure(.limitExceeded, "the byte size of tensor \(name) overflows", at: typeOffset)
            }

            let offsetFieldOffset = position
            let rawOffset = try read(UInt64.self, "the data offset of tensor \(name)")
            guard rawOffset <= UInt64(Int.max) else {
                throw failure(
                    .limitExceeded, "data offset \(rawOffset) of tensor \(name) is past any file", at: offsetFieldOffset
                )
            }
            let relativeOffset = Int(rawOffset)
            guard relativeOffset % alignment == 0 else {
                throw failure(
                    .invalidValue,
                    "data offset \(relativeOffset) of tensor \(name) is not a multiple of the alignment \(alignment)",
                    at: offsetFieldOffset
                )
            }
            infos.append(RawTensorInfo(
                name: name, dimensions: dimensions, type: type, relativeOffset: relativeOffset,
                byteCount: byteCount, infoOffset: infoOffset, offsetFieldOffset: offsetFieldOffset
            ))
        }
        return infos
    }

    /// Resolves data offsets against the data section and checks that every range lies inside the file
    /// and that no two overlap.
    private func placeTensors(_ infos: [RawTensorInfo], dataOffset: Int) throws(GGUFError) -> [GGUFTensorInfo] {
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(infos.count)
        for info in infos {
            let (start, startOverflow) = dataOffset.addingReportingOverflow(info.relativeOffset)
            let (end, endOverflow) = start.addingReportingOverflow(info.byteCount)
            guard !startOverflow, !endOverflow, end <= buffer.count else {
                let range = startOverflow || endOverflow
                    ? "beyond any file" : "bytes \(start)..<\(end)"
                throw failure(
                    .truncated,
                    "data of tensor \(info.name) (\(range)) runs past the end of the file (\(buffer.count) bytes)",
                    at: info.offsetFieldOffset
                )
            }
            tensors.append(GGUFTensorInfo(
                name: info.name, dimensions: info.dimensions, type: info.type, offset: start,
                byteCount: info.byteCount
            ))
        }

        // Ties are broken by file order so the error always names the later tensor.
        let order = tensors.indices.sorted { (tensors[$0].offset, $0) < (tensors[$1].offset, $1) }
        for (previous, next) in zip(order, order.dropFirst()) {
            let a = tensors[previous], b = tensors[next]
            if b.offset < a.offset + a.byteCount {
                throw failure(
                    .overlappingTensors,
                    "tensor \(b.name) (bytes \(b.offset)..<\(b.offset + b.byteCount)) overlaps tensor \(a.name) "
                        + "(bytes \(a.offset)..<\(a.offset + a.byteCount))",
                    at: infos[next].offsetFieldOffset
                )
            }
        }
        return tensors
    }
}
