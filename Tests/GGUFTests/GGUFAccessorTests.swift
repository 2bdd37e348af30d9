import Testing
import GGUF

@Suite("GGUF typed metadata accessors")
struct GGUFAccessorTests {
    let file: GGUFFile

    init() throws {
        var writer = GGUFTestWriter()
        writer.metadata = [
            ("name", .string("tiny")), ("layers", .uint32(30)), ("negative", .int8(-3)), ("huge", .uint64(UInt64.max)),
            ("eps", .float32(1e-5)), ("wide", .float64(0.25)), ("flag", .bool(true)),
            ("tokens", .array([.string("a"), .string("b")])), ("ids", .array([.int32(-1), .int32(7)])),
            ("small", .array([.uint16(9)])), ("scores", .array([.float32(0.5), .float32(1.5)])),
            ("wide.scores", .array([.float64(2.5)])), ("int.scores", .array([.int8(2)])), ("empty", .array([])),
        ]
        file = try GGUFFile(bytes: writer.build().bytes, name: "acc.gguf")
    }

    /// The GGUFError `body` throws, or nil if it throws nothing (or something else, which the test then reports).
    func error(_ body: () throws -> Void) -> GGUFError? {
        do {
            try body()
            return nil
        } catch let error as GGUFError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test("accessors return values of the matching types, converting integer widths and floats")
    func values() throws {
        #expect(try file.string("name") == "tiny")
        #expect(try file.integer("layers") == 30)
        #expect(try file.integer("negative") == -3)
        #expect(try file.float("eps") == 1e-5)
        #expect(try file.float("wide") == 0.25)
        #expect(try file.float("layers") == 30)
        #expect(try file.bool("flag"))
        #expect(try file.stringArray("tokens") == ["a", "b"])
        #expect(try file.integerArray("ids") == [-1, 7])
        #expect(try file.integerArray("small") == [9])
        #expect(try file.floatArray("scores") == [0.5, 1.5])
        #expect(try file.floatArray("wide.scores") == [2.5])
        #expect(try file.floatArray("int.scores") == [2])
        #expect(try file.stringArray("empty") == [])
        #expect(file.contains("name") && !file.contains("nope"))
    }

    @Test("optional accessors return nil for absent keys and values for present ones")
    func optionals() throws {
        #expect(try file.optionalString("nope") == nil)
        #expect(try file.optionalInteger("nope") == nil)
        #expect(try file.optionalFloat("nope") == nil)
        #expect(try file.optionalBool("nope") == nil)
        #expect(try file.optionalString("name") == "tiny")
        #expect(try file.optionalInteger("layers") == 30)
        #expect(try file.optionalFloat("eps") == 1e-5)
        #expect(try file.optionalBool("flag") == true)
    }

    @Test("a missing key names the file, the key and the expected type")
    func missingKey() throws {
        let e = try #require(error { _ = try file.integer("llama.block_count") })
        #expect(e.code == .missingKey)
        #expect(e.message == "acc.gguf: missing metadata key \"llama.block_count\" (expected integer)")
        #expect(e.offset == nil)
    }

    @Test("a wrong type names the key, the expected type and the found type")
    func typeMismatches() throws {
        let cases: [(() throws -> Void, String)] = [
            ({ _ = try file.integer("name") }, "acc.gguf: metadata key \"name\" has type string, expected integer"),
            ({ _ = try file.string("layers") }, "acc.gguf: metadata key \"layers\" has type uint32, expected string"),
            ({ _ = try file.float("flag") }, "acc.gguf: metadata key \"flag\" has type bool, expected float"),
            ({ _ = try file.bool("eps") }, "acc.gguf: metadata key \"eps\" has type float32, expected bool"),
            ({ _ = try file.stringArray("ids") }, "acc.gguf: metadata key \"ids\" has type array of int32, expected array of string"),
            ({ _ = try file.integerArray("tokens") }, "acc.gguf: metadata key \"tokens\" has type array of string, expected array of integer"),
            ({ _ = try file.floatArray("name") }, "acc.gguf: metadata key \"name\" has type string, expected array of float"),
            ({ _ = try file.optionalInteger("tokens") }, "acc.gguf: metadata key \"tokens\" has type array of string, expected integer"),
            ({ _ = try file.optionalBool("name") }, "acc.gguf: metadata key \"name\" has type string, expected bool"),
        ]
        for (body, message) in cases {
            let e = try #require(error(body))
            #expect(e.code == .typeMismatch)
            #expect(e.message == message)
        }
    }

    @Test("a uint64 beyond Int.max is an invalid value, not a wrapped integer")
    func integerOutOfRange() throws {
        let e = try #require(error { _ = try file.integer("huge") })
        #expect(e.code == .invalidValue)
        #expect(e.message == "acc.gguf: metadata key \"huge\" holds uint64(18446744073709551615), which exceeds Int.max")
    }
}
