import Foundation
import GGUF
import Testing
@testable import Inference

/// The prefill path's dequantization against the `gguf` Python package's `dequantize`, bit for bit, on random
/// blocks of every quantized type (fixture made by `Deploy/scripts/make_quant_fixtures.py`).
@Suite("Dequantization against gguf-py")
struct DequantizeReferenceTests {
    struct Fixture: Decodable {
        struct Entry: Decodable {
            let ggml_id: UInt32
            let blocks: Int
            let bytes: String
            let values: [String]
        }
        let gguf_version: String
        let types: [String: Entry]
    }

    static func fixture() throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "dequantize", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    static func hexBytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    @Test("the fixture covers every supported quantized type")
    func coversEveryType() throws {
        let fixture = try Self.fixture()
        let quantized = GGMLType.supportedTypes.filter { $0.blockElements > 1 }.map(\.name)
        #expect(Set(fixture.types.keys) == Set(quantized))
    }

    @Test("every quantized type dequantizes to gguf-py's values bit for bit",
          arguments: GGMLType.supportedTypes.filter { $0.blockElements > 1 })
    func bitEqual(type: GGMLType) throws {
        let entry = try #require(try Self.fixture().types[type.name], "no fixture for \(type)")
        #expect(entry.ggml_id == type.ggmlID)
        let bytes = Self.hexBytes(entry.bytes)
        #expect(bytes.count == entry.blocks * type.blockBytes)
        let columns = entry.blocks * type.blockElements
        let got = try bytes.withUnsafeBytes { raw in
            kernelDequantizedRow(try WeightMatrix(type: type, rows: 1, columns: columns, base: raw.baseAddress!), 0)
        }
        let want = entry.values.map { UInt32($0, radix: 16)! }
        #expect(want.count == columns)
        var mismatches = 0
        for i in 0..<columns where got[i].bitPattern != want[i] {
            if mismatches < 5 {
                Issue.record("\(type) element \(i): \(got[i]) (0x\(String(got[i].bitPattern, radix: 16))), gguf-py \(Float(bitPattern: want[i]))")
            }
            mismatches += 1
        }
        #expect(mismatches == 0, "\(mismatches) of \(columns) \(type) values differ from gguf-py's")
    }

    @Test("a tensor type without kernels is refused with its name")
    func unsupportedTypeRefused() {
        let bytes = [UInt8](repeating: 0, count: 66)
        bytes.withUnsafeBytes { raw in
            #expect {
                _ = try WeightMatrix(type: .iq2_xxs, rows: 1, columns: 256, base: raw.baseAddress!)
            } throws: { error in
                guard let error = error as? InferenceError else { return false }
                return error.code == .unsupportedModel && error.message.contains("IQ2_XXS")
                    && error.message.contains("Q4_K")
            }
        }
    }
}
