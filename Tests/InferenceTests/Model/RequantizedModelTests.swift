import Foundation
import GGUF
import Testing

@testable import Inference

/// The default model requantized by llama.cpp into the tensor types people download (made by
/// `Deploy/scripts/make_requantized_models.py`, which `bash Deploy/setup.sh --test-models` runs). Tests that need them
/// fail with that command when they are missing.
enum RequantizedModels {
    /// Baton's names of the files, as make_requantized_models.py writes them.
    static let kinds = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q2_K-pure"]

    static func fileName(_ kind: String) -> String { "SmolLM2-135M-Instruct.requant-\(kind).gguf" }

    static func path(_ kind: String) throws -> String { try DefaultModel.testModel(fileName(kind)) }
}

@Suite("Requantized models")
struct RequantizedModelTests {
    struct Fixture: Decodable {
        struct Model: Decodable {
            let sha256: String
            let tensors: [String: Tensor]
        }
        struct Tensor: Decodable {
            let type: String
            let checksum: String
        }
        let models: [String: Model]
    }

    /// Σ bits_i·(2i + 1) mod 2^64 over the f32 bit patterns: any single differing value changes it.
    static func checksum(_ values: UnsafeBufferPointer<Float>) -> UInt64 {
        var sum: UInt64 = 0
        for (i, v) in values.enumerated() { sum &+= UInt64(v.bitPattern) &* (2 &* UInt64(i) &+ 1) }
        return sum
    }

    @Test("every tensor of every requantized model dequantizes to gguf-py's values", arguments: RequantizedModels.kinds)
    func tensorsMatchGgufPy(kind: String) throws {
        let url = try #require(Bundle.module.url(forResource: "requantized_tensors", withExtension: "json", subdirectory: "Fixtures"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        let name = RequantizedModels.fileName(kind)
        let reference = try #require(fixture.models[name], "no checksums for \(name) in requantized_tensors.json")
        let file = try GGUFFile(path: try RequantizedModels.path(kind))
        #expect(file.tensors.count == reference.tensors.count)
        let pool = ThreadPool(threads: 2)
        var types = Set<GGMLType>()
        for tensor in file.tensors {
            let want = try #require(reference.tensors[tensor.name], "\(name): tensor \(tensor.name) has no checksum")
            #expect(tensor.type.name == want.type, "\(name) \(tensor.name)")
            types.insert(tensor.type)
            let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: tensor.elementCount)
            defer { values.deallocate() }
            let base = file.withTensorData(tensor) { $0.baseAddress! }
            let w = try WeightMatrix(type: tensor.type, rows: tensor.rowCount, columns: tensor.rowLength, base: base)
            Kernels.dequantizeAll(w, into: values.baseAddress!, pool: pool)
            let got = String(Self.checksum(UnsafeBufferPointer(values)), radix: 16)
            #expect(got == String(UInt64(want.checksum, radix: 16)!, radix: 16),
                    "\(name): \(tensor.name) (\(tensor.type)) dequantizes to other values than gguf-py's")
        }
        #expect(types.contains { $0.blockElements == 256 } || kind == "Q5_0" || kind == "Q5_1", "\(name) holds no K-quant tensor: \(types)")
    }
}
