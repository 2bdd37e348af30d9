import Testing
@testable import GGUF

/// Broken and hostile files: each must throw a GGUFError with the right code at the offset of the field at fault.
@Suite("GGUF reader on hostile input")
struct GGUFHostileInputTests {
    /// One metadata pair (`general.architecture`) and one small tensor.
    static func small() -> GGUFTestWriter {
        var writer = GGUFTestWriter()
        writer.metadata = [("general.architecture", .string("llama"))]
        writer.tensors = [TestTensor("t", [4], .f32)]
        return writer
    }

    func expectError(
        _ bytes: [UInt8], _ code: GGUFError.Code, at offset: Int, containing text: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error = parseError(bytes, name: "bad.gguf") else {
            Issue.record("parsed without error", sourceLocation: sourceLocation)
            return
        }
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.offset == offset, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.hasPrefix("bad.gguf, offset \(offset): "), "\(error)", sourceLocation: sourceLocation)
        if let text {
            #expect(error.message.contains(text), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("the small valid file parses, so every failure below comes from its one defect")
    func baselineParses() throws {
        let file = try GGUFFile(bytes: Self.small().build().bytes, name: "ok.gguf")
        #expect(file.tensors.count == 1 && file.metadata.count == 1)
    }

    @Test("a bad magic number is rejected at offset 0 with the bytes found")
    func badMagic() {
        var writer = Self.small()
        writer.magic = Array("GGUX".utf8)
        expectError(writer.build().bytes, .badMagic, at: 0, containing: "magic is 0x47475558, expected \"GGUF\"")
        expectError(Array("PK\u{3}\u{4}hello world, this is not gguf".utf8), .badMagic, at: 0)
    }

    @Test("version 1, unknown versions and big-endian files are unsupported, at offset 4")
    func versions() {
        for version: UInt32 in [1, 0, 4, 0xFFFF_FFFF] {
            var writer = Self.small()
            writer.version = version
            expectError(writer.build().bytes, .unsupportedVersion, at: 4, containing: "GGUF version \(version) is not supported")
        }
        var bigEndian = Self.small()
        bigEndian.version = UInt32(3).byteSwapped
        expectError(bigEndian.build().bytes, .unsupportedVersion, at: 4, containing: "big-endian")
    }

    @Test("files cut inside the fixed header are truncated at the field that is cut")
    func truncatedHeader() {
        let bytes = Self.small().build().bytes
        expectError([], .truncated, at: 0)
        expectError(Array(bytes[0 ..< 3]), .truncated, at: 0)
        expectError(Array(bytes[0 ..< 6]), .truncated, at: 4)
        expectError(Array(bytes[0 ..< 10]), .truncated, at: 8)
        expectError(Array(bytes[0 ..< 20]), .truncated, at: 16)
    }

    @Test("absurd tensor and metadata counts are refused before anything is allocated")
    func absurdCounts() {
        let bytes = Self.small().build().bytes
        expectError(bytes.patched(UInt64.max, at: 8), .limitExceeded, at: 8, containing: "tensor count 18446744073709551615")
        expectError(bytes.patched(UInt64(1) << 40, at: 16), .limitExceeded, at: 16, containing: "metadata count")
        // Plausible-looking but still too many for the bytes left.
        expectError(bytes.patched(UInt64(50), at: 8), .limitExceeded, at: 8)
    }

    @Test("a string length past the end of the file is refused at the length field")
    func absurdStringLengths() {
        let (bytes, layout) = Self.small().build()
        let key = layout.entries[0].keyOffset
        #expect(key == 24)
        expectError(bytes.patched(UInt64.max, at: key), .truncated, at: 24, containing: "claims 18446744073709551615 bytes")
        let value = layout.entries[0].valueOffset
        expectError(bytes.patched(UInt64(1) << 62, at: value), .truncated, at: value)
        let tensorName = layout.tensors[0].infoOffset
        expectError(bytes.patched(UInt64(bytes.count), at: tensorName), .truncated, at: tensorName)
    }

    @Test("an absurd array length is refused at the length field, for flat and nested arrays")
    func absurdArrayLengths() {
        var writer = GGUFTestWriter()
        writer.metadata = [("a", .array([.uint32(1), .uint32(2)])), ("n", .array([.array([.string("x")])]))]
        let (bytes, layout) = writer.build()
        // "a": key length 24..<32, key 32, value type 33..<37, element type 37..<41, count at 41.
        expectError(bytes.patched(UInt64.max / 2, at: 41), .limitExceeded, at: 41, containing: "length of array \"a\"")
        let outer = layout.entries[1].valueOffset + 4
        let inner = outer + 8 + 4
        expectError(bytes.patched(UInt64(1) << 33, at: outer), .limitExceeded, at: outer)
        expectError(bytes.patched(UInt64(1) << 33, at: inner), .limitExceeded, at: inner)
    }

    @Test("arrays nested too deeply are refused instead of recursing without bound")
    func deepNesting() throws {
        func nested(_ depth: Int) -> GGUFValue { depth == 0 ? .uint8(1) : .array([nested(depth - 1)]) }
        var ok = GGUFTestWriter()
        ok.metadata = [("deep", nested(8))]
        #expect(try GGUFFile(bytes: ok.build().bytes, name: "ok.gguf").metadata["deep"] == nested(8))
        var writer = GGUFTestWriter()
        writer.metadata = [("deep", nested(9))]
        let valueOffset = writer.build().layout.entries[0].valueOffset
        expectError(writer.build().bytes, .limitExceeded, at: valueOffset + 8 * 12, containing: "nest deeper than 8")
    }

    @Test("unknown value types, bad bools, empty and duplicate keys are invalid values")
    func invalidMetadata() {
        var writer = GGUFTestWriter()
        writer.rawMetadata = [("weird", 13, [0, 0, 0, 0])]
        expectError(writer.build().bytes, .invalidValue, at: writer.build().layout.entries[0].typeOffset,
                    containing: "unknown metadata value type 13")
        writer.rawMetadata = [("flag", 7, [2])]
        expectError(writer.build().bytes, .invalidValue, at: writer.build().layout.entries[0].valueOffset,
                    containing: "bool value 2")
        writer.rawMetadata = [("arr", 9, [99, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])]
        expectError(writer.build().bytes, .invalidValue, at: writer.build().layout.entries[0].valueOffset,
                    containing: "unknown array element type 99")
        writer.rawMetadata = []
        writer.metadata = [("k", .uint8(1)), ("k", .uint8(2))]
        expectError(writer.build().bytes, .invalidValue, at: writer.build().layout.entries[1].keyOffset,
                    containing: "duplicate metadata key \"k\"")
        writer.metadata = [("", .uint8(1))]
        expectError(writer.build().bytes, .invalidValue, at: 24, containing: "empty metadata key")
    }

    @Test("general.alignment must be a nonzero power of two")
    func badAlignment() {
        for value: GGUFValue in [.uint32(0), .uint32(48), .int32(-32), .string("32")] {
            var writer = Self.small()
            writer.metadata = [("general.alignment", value)]
            let offset = writer.build().layout.entries[0].valueOffset
            expectError(writer.build().bytes, .invalidValue, at: offset, containing: "nonzero power of two")
        }
    }

    @Test("more than four dimensions, a zero dimension or an overflowing element count is refused")
    func badDimensions() {
        var writer = GGUFTestWriter()
        writer.tensors = [TestTensor("t5", [1, 1, 1, 1, 1], .f32, data: [0, 0, 0, 0])]
        var layout = writer.build().layout
        expectError(writer.build().bytes, .limitExceeded, at: layout.tensors[0].rankOffset, containing: "5 dimensions")

        writer.tensors = [TestTensor("t0", [], .f32, data: [])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .invalidValue, at: layout.tensors[0].rankOffset, containing: "no dimensions")

        writer.tensors = [TestTensor("z", [4, 0], .f32, data: [])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .invalidValue, at: layout.tensors[0].dimensionOffsets[1],
                    containing: "dimension 1 of tensor z is 0")

        writer.tensors = [TestTensor("big", [UInt64(1) << 40, UInt64(1) << 40], .f32, data: [])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .limitExceeded, at: layout.tensors[0].dimensionOffsets[1], containing: "overflows")

        writer.tensors = [TestTensor("huge", [UInt64.max], .f32, data: [])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .limitExceeded, at: layout.tensors[0].dimensionOffsets[0])

        // The element count fits but the byte size does not.
        writer.tensors = [TestTensor("bytes", [UInt64(1) << 62], .f32, data: [])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .limitExceeded, at: layout.tensors[0].typeOffset, containing: "byte size")

        writer.tensors = [TestTensor("row", [33, 2], .q8_0, data: [UInt8](repeating: 0, count: 68))]
        layout = writer.build().layout
        expectError(writer.build().bytes, .invalidValue, at: layout.tensors[0].dimensionOffsets[0],
                    containing: "row length 33 of tensor row is not a multiple of the Q8_0 block size 32")
    }

    @Test("a type ggml defines is read even without kernels; an id ggml does not define is refused by number")
    func unsupportedTypes() throws {
        var writer = GGUFTestWriter()
        writer.tensors = [TestTensor("ok", [32], .q4_0), TestTensor("blk.0.ffn_down.weight", [256, 2], typeID: 16)]
        let file = try GGUFFile(bytes: writer.build().bytes, name: "iq.gguf")
        let tensor = try #require(file.tensor(named: "blk.0.ffn_down.weight"))
        #expect(tensor.type == .iq2_xxs && !tensor.type.isSupported && tensor.byteCount == 2 * 66)
        writer.tensors = [TestTensor("odd", [4], typeID: 1234, data: [1])]
        var layout = writer.build().layout
        expectError(writer.build().bytes, .unsupportedTensorType, at: layout.tensors[0].typeOffset,
                    containing: "unknown tensor type 1234 in tensor odd")
        writer.tensors = [TestTensor("removed", [32], typeID: 4, data: [1])]
        layout = writer.build().layout
        expectError(writer.build().bytes, .unsupportedTensorType, at: layout.tensors[0].typeOffset,
                    containing: "unknown tensor type 4 in tensor removed")
    }

    @Test("tensor data offsets past the end, misaligned or overlapping are refused at the offset field")
    func badTensorOffsets() {
        var writer = GGUFTestWriter()
        writer.tensors = [TestTensor("far", [4], .f32, offset: UInt64(1) << 40)]
        var layout = writer.build().layout
        expectError(writer.build().bytes, .truncated, at: layout.tensors[0].offsetFieldOffset, containing: "runs past the end")

        writer.tensors = [TestTensor("max", [4], .f32, offset: UInt64(Int.max) - 31)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .truncated, at: layout.tensors[0].offsetFieldOffset, containing: "beyond any file")

        writer.tensors = [TestTensor("beyond", [4], .f32, offset: UInt64.max - 31)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .limitExceeded, at: layout.tensors[0].offsetFieldOffset)

        writer.tensors = [TestTensor("skew", [4], .f32, offset: 8)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .invalidValue, at: layout.tensors[0].offsetFieldOffset,
                    containing: "data offset 8 of tensor skew is not a multiple of the alignment 32")

        writer.tensors = [TestTensor("a", [64], .f32, offset: 0), TestTensor("b", [8], .f32, offset: 224)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .overlappingTensors, at: layout.tensors[1].offsetFieldOffset,
                    containing: "tensor b (bytes")
        expectError(writer.build().bytes, .overlappingTensors, at: layout.tensors[1].offsetFieldOffset,
                    containing: "overlaps tensor a")

        writer.tensors = [TestTensor("same", [8], .f32, offset: 0), TestTensor("name", [8], .f32, offset: 0)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .overlappingTensors, at: layout.tensors[1].offsetFieldOffset)

        writer.tensors = [TestTensor("dup", [8], .f32), TestTensor("dup", [8], .f32)]
        layout = writer.build().layout
        expectError(writer.build().bytes, .invalidValue, at: layout.tensors[1].infoOffset,
                    containing: "duplicate tensor name \"dup\"")
    }

    @Test("a file cut inside the tensor data is truncated at the offending tensor's offset field")
    func truncatedData() {
        let (bytes, layout) = Self.small().build()
        expectError(Array(bytes.dropLast(1)), .truncated, at: layout.tensors[0].offsetFieldOffset,
                    containing: "data of tensor t")
        // Cut right after the tensor infos: the data section would start past the end.
        let afterInfos = layout.tensors[0].offsetFieldOffset + 8
        expectError(Array(bytes[0 ..< afterInfos + 1]), .truncated, at: afterInfos)
    }
}

@Suite("GGUF reader memory bound")
struct GGUFMemoryBoundTests {
    @Test("array elements are counted across the whole file and refused past the budget")
    func arrayElementBudget() throws {
        var writer = GGUFTestWriter()
        writer.metadata = [
            ("a", .array([.uint8(1), .uint8(2), .uint8(3)])),
            ("b", .array([.array([.uint8(4)]), .array([.uint8(5), .uint8(6)])])),
        ]
        let (bytes, layout) = writer.build()
        // a: 3 elements; b: 2 + 1 + 2 = 5 elements; 8 in all.
        func parse(budget: Int) -> Result<GGUFHeader, GGUFError> {
            bytes.withUnsafeBytes { buffer in
                Result { () throws(GGUFError) -> GGUFHeader in
                    try GGUFParser.parse(buffer, name: "budget.gguf", maximumArrayElements: budget)
                }
            }
        }
        _ = try parse(budget: 8).get()
        guard case .failure(let error) = parse(budget: 7) else {
            Issue.record("parsed past the element budget")
            return
        }
        let lastInner = layout.entries[1].valueOffset + 12 + 12 + 1 + 4
        #expect(error.code == .limitExceeded && error.offset == lastInner, "\(error)")
        #expect(error.message.contains("limit on array elements"))
    }
}
