import Benchmarks
import Foundation
import Placement
import Testing

@Suite("Simulator cost model")
struct CostModelTests {
    static let reference = CostModel.Reference(sgemmGFLOPS: 100, memoryReadGBps: 20, threads: 1)

    @Test("Fitting exact measurements recovers the coefficients, and the fitted times scale with the device")
    func fitRecoversCoefficients() throws {
        // prefill = 20 ms + ΣT · 2.7e8 / (100e9 · 0.8) + 1e-7 · ΣT²; decode = 5 ms + 1 ms · B + 2 µs · C.
        let flops = 2.7e8
        func prefill(_ prompts: [Int]) -> Double {
            0.020 + Double(prompts.reduce(0, +)) * flops / (100e9 * 0.8) + 1e-7 * prompts.reduce(0.0) { $0 + Double($1 * $1) }
        }
        let prefillSamples = [[16], [64], [256], [512], [32, 32, 32, 32]].map {
            CostModel.Sample(kind: "prefill", prompts: $0, seconds: prefill($0))
        }
        let decodeSamples = [(1, 0), (4, 0), (8, 0), (1, 1000), (4, 4000), (8, 2000)].map { b, c in
            CostModel.Sample(kind: "decode", batch: b, context: c, seconds: 0.005 + 0.001 * Double(b) + 2e-6 * Double(c))
        }
        let model = try CostModel.fit(model: "m", reference: Self.reference, flopsPerToken: flops, kvBytesPerToken: 23_040,
                                      kvBlockTokens: 16, prefillChunkTokens: 512, prefillSamples: prefillSamples,
                                      decodeSamples: decodeSamples)
        #expect(abs(model.prefill.efficiency - 0.8) < 1e-6)
        #expect(abs(model.prefill.passOverheadSeconds - 0.020) < 1e-9)
        #expect(abs(model.prefill.attentionSecondsPerToken2 - 1e-7) < 1e-12)
        #expect(abs(model.decode.weightSeconds - 0.005) < 1e-9 && abs(model.decode.perSequenceSeconds - 0.001) < 1e-9)
        #expect(abs(model.decode.perContextTokenSeconds - 2e-6) < 1e-12)
        #expect(model.samples.allSatisfy { abs(($0.fittedSeconds ?? 0) - $0.seconds) < 1e-9 })
        // A box with twice the bandwidth and the same GFLOP/s: weights and cache read in half the time.
        let faster = DeviceProfile(name: "x", sgemmGFLOPS: 100, memoryReadGBps: 40, memoryTotalBytes: 0, memoryFreeBytes: 0, cores: 1)
        #expect(abs(model.decodeStepSeconds(batch: 2, context: 1000, device: faster) - (0.0025 + 0.002 + 0.001)) < 1e-9)
    }

    @Test("Noise that would make a coefficient negative fixes it at zero instead")
    func nonNegative() throws {
        // Step time that falls slightly with the context: the context coefficient is dropped, not made negative.
        let decodeSamples = [(1, 0, 0.006), (2, 0, 0.007), (1, 1000, 0.0059), (2, 1000, 0.0069)].map { b, c, s in
            CostModel.Sample(kind: "decode", batch: b, context: c, seconds: s)
        }
        let prefillSamples = [[10], [100], [200], [300]].map { CostModel.Sample(kind: "prefill", prompts: $0, seconds: Double($0[0]) * 1e-3) }
        let model = try CostModel.fit(model: "m", reference: Self.reference, flopsPerToken: 1e8, kvBytesPerToken: 1,
                                      kvBlockTokens: 16, prefillChunkTokens: 512, prefillSamples: prefillSamples,
                                      decodeSamples: decodeSamples)
        #expect(model.decode.perContextTokenSeconds == 0)
        #expect(model.decode.perSequenceSeconds > 0 && model.decode.weightSeconds > 0)
    }

    @Test("Too few measurements to fit are refused")
    func tooFew() {
        #expect(throws: BenchmarkError.self) {
            try CostModel.fit(model: "m", reference: Self.reference, flopsPerToken: 1, kvBytesPerToken: 1, kvBlockTokens: 16,
                              prefillChunkTokens: 512, prefillSamples: [.init(kind: "prefill", prompts: [8], seconds: 1)],
                              decodeSamples: [])
        }
    }

    @Test("The calibration file round-trips, and a file that is not one is refused with its path")
    func fileRoundTrip() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("costs-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ClusterSimulatorTests.costs.save(path: path)
        #expect(try CostModel.load(path: path) == ClusterSimulatorTests.costs)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: path))
        #expect {
            try CostModel.load(path: path)
        } throws: { error in
            "\(error)".contains("\(path) is not a calibration file")
        }
    }
}
