import Foundation
import Testing
import GGUF

@Suite("GGUF reader round trips")
struct GGUFFileTests {
    static let allValues: [(String, GGUFValue)] = [
        ("t.uint8", .uint8(200)), ("t.int8", .int8(-100)), ("t.uint16", .uint16(60_000)),
        ("t.int16", .int16(-30_000)), ("t.uint32", .uint32(4_000_000_000)), ("t.int32", .int32(-2_000_000_000)),
        ("t.float32", .float32(1.5e-5)), ("t.bool.true", .bool(true)), ("t.bool.false", .bool(false)),
        ("t.string", .string("héllo, 世界 👋")), ("t.string.empty", .string("")),
        ("t.uint64", .uint64(UInt64.max)), ("t.int64", .int64(Int64.min)), ("t.float64", .float64(-2.25e300)),
        ("t.array.int32", .array([.int32(1), .int32(-2), .int32(3)])),
        ("t.array.string", .array([.string("a"), .string(""), .string("ccc")])),
        ("t.array.empty", .array([])),
        ("t.array.nested", .array([
            .array([.uint8(1), .uint8(2)]),
            .array([.string("x")]),
            .array([.array([.float64(0.5)]), .array([])]),
        ])),
    ]

    @Test("every metadata value type, nested arrays included, survives a round trip in v2 and v3", arguments: [UInt32(2), 3])
    func roundTripsAllValueTypes(version: UInt32) throws {
        var writer = GGUFTestWriter()
        writer.version = version
        writer.metadata = Self.allValues
        let file = try GGUFFile(bytes: writer.build().bytes, name: "values.gguf")
        #expect(file.version == version)
        #expect(file.name == "values.gguf")
        #expect(file.metadataKeys == Self.allValues.map(\.0))
        for (key, value) in Self.allValues {
            #expect(file.metadata[key] == value, "\(key)")
        }
        #expect(file.alignment == 32)
        #expect(file.tensors.isEmpty)
    }

    @Test("tensor infos give dimensions, type, absolute offsets and byte counts for every supported type")
    func tensorInfos() throws {
        var writer = GGUFTestWriter()
        writer.tensors = [
            TestTensor("a.f32", [3, 2], .f32), TestTensor("b.f16", [5], .f16), TestTensor("c.bf16", [7, 1, 1], .bf16),
            TestTensor("d.q4_0", [64, 3], .q4_0), TestTensor("e.q4_1", [32, 2, 2], .q4_1),
            TestTensor("f.q8_0", [96, 1, 1, 2], .q8_0),
        ]
        let (bytes, layout) = writer.build()
        let file = try GGUFFile(bytes: bytes, name: "tensors.gguf")
        let expectedBytes = [24, 10, 14, 2 * 3 * 18, 4 * 20, 3 * 2 * 34]
        #expect(file.tensors.map(\.name) == ["a.f32", "b.f16", "c.bf16", "d.q4_0", "e.q4_1", "f.q8_0"])
        #expect(file.tensors.map(\.type) == [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0])
        #expect(file.tensors.map(\.byteCount) == expectedBytes)
        #expect(file.tensors.map(\.offset) == layout.tensors.map(\.dataOffset))
        #expect(file.dataOffset == layout.dataOffset)
        let q = try #require(file.tensor(named: "f.q8_0"))
        #expect(q.dimensions == [96, 1, 1, 2])
        #expect(q.elementCount == 192 && q.rowLength == 96 && q.rowCount == 2)
        for (tensor, placed) in zip(file.tensors, layout.tensors) {
            let lent = file.withTensorData(tensor) { Array($0) }
            #expect(lent == Array(bytes[placed.dataOffset ..< placed.dataOffset + placed.byteCount]))
            #expect(tensor.offset % file.alignment == 0)
        }
        #expect(file.tensor(named: "missing") == nil)
    }

    @Test("general.alignment sets the padding of the data section and of every tensor")
    func customAlignment() throws {
        var writer = GGUFTestWriter()
        writer.alignment = 64
        writer.tensors = [TestTensor("x", [3], .f32), TestTensor("y", [40], .f16), TestTensor("z", [1], .f32)]
        let (bytes, layout) = writer.build()
        let file = try GGUFFile(bytes: bytes, name: "aligned.gguf")
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0 && file.dataOffset == layout.dataOffset)
        #expect(file.tensors.map(\.offset) == [file.dataOffset, file.dataOffset + 64, file.dataOffset + 192])
        #expect(try file.integer("general.alignment") == 64)
    }

    @Test("a file on disk is mapped and reads the same as the same bytes in memory")
    func mappedFileMatchesBytes() throws {
        var writer = GGUFTestWriter()
        writer.metadata = Self.allValues
        writer.tensors = [TestTensor("w", [32, 4], .q4_1), TestTensor("b", [4], .f32)]
        let bytes = writer.build().bytes
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString).gguf").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let mapped = try GGUFFile(path: path)
        let inMemory = try GGUFFile(bytes: bytes, name: path)
        #expect(mapped.name == path && mapped.fileSize == bytes.count)
        #expect(mapped.metadata == inMemory.metadata && mapped.metadataKeys == inMemory.metadataKeys)
        #expect(mapped.tensors == inMemory.tensors)
        for tensor in mapped.tensors {
            #expect(mapped.withTensorData(tensor) { Array($0) } == inMemory.withTensorData(tensor) { Array($0) })
        }
    }

    @Test("a missing path is fileNotFound and a directory is an I/O error, both naming the path")
    func pathErrors() throws {
        let missing = "/nonexistent/dir/model.gguf"
        #expect(throws: GGUFError.self) { try GGUFFile(path: missing) }
        do {
            _ = try GGUFFile(path: missing)
        } catch {
            #expect(error.code == .fileNotFound)
            #expect(error.message == "file not found: /nonexistent/dir/model.gguf")
        }
        let directory = FileManager.default.temporaryDirectory.path
        do {
            _ = try GGUFFile(path: directory)
            Issue.record("opening a directory succeeded")
        } catch {
            #expect(error.code == .io)
            #expect(error.message.contains(directory))
        }
    }

    @Test("an empty file on disk is reported as truncated at offset 0")
    func emptyFileOnDisk() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString).gguf").path
        try Data().write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try GGUFFile(path: path)
            Issue.record("an empty file parsed")
        } catch {
            #expect(error.code == .truncated && error.offset == 0)
        }
    }

    @Test("ggml types carry ggml's ids, block sizes and names")
    func ggmlTypes() {
        let supported = GGMLType.supportedTypes
        #expect(supported.map(\.ggmlID) == [0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 30])
        #expect(supported.map(\.blockElements) == [1, 1, 32, 32, 32, 32, 32, 256, 256, 256, 256, 256, 1])
        #expect(supported.map(\.blockBytes) == [4, 2, 18, 20, 22, 24, 34, 84, 110, 144, 176, 210, 2])
        #expect(supported.map(\.name) == ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "BF16"])
        #expect(GGMLType.allCases.map(\.description) == GGMLType.allCases.map(\.name))
        for type in GGMLType.allCases { #expect(GGMLType(ggmlID: type.ggmlID) == type) }
        #expect(Set(GGMLType.allCases.map(\.ggmlID)).count == GGMLType.allCases.count)
        // Types ggml defines but Baton has no kernels for are still sized and named.
        #expect(GGMLType(ggmlID: 16) == .iq2_xxs && !GGMLType.iq2_xxs.isSupported)
        #expect(GGMLType.iq2_xxs.blockElements == 256 && GGMLType.iq2_xxs.blockBytes == 66)
        #expect(GGMLType.iq4_nl.blockBytes == 18 && GGMLType.mxfp4.blockBytes == 17)
        #expect(GGMLType.ggmlName(of: 14) == "Q6_K")
        #expect(GGMLType.ggmlName(of: 39) == "MXFP4")
        #expect(GGMLType.ggmlName(of: 4) == nil)
        #expect(GGMLType.ggmlName(of: 31) == nil)
        #expect(GGMLType.ggmlName(of: 1000) == nil)
    }

    @Test("an error prints its code and message")
    func errorDescription() {
        let error = GGUFError(.truncated, "m.gguf, offset 3: file ends", offset: 3)
        #expect(error.description == "truncated: m.gguf, offset 3: file ends")
        let caused = GGUFError(.io, "cannot read", cause: GGUFError(.fileNotFound, "inner"))
        #expect(caused.description == "I/O error: cannot read (caused by: file not found: inner)")
    }
}
