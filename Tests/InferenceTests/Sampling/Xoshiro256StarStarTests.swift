import Testing
@testable import Inference

@Suite("xoshiro256** generator")
struct Xoshiro256StarStarTests {
    @Test("outputs match the reference algorithm seeded through splitmix64")
    func referenceValues() {
        // Computed with an independent transcription of the reference C code (splitmix64(0) starts 0xE220A8397B1DCDAF).
        var zero = Xoshiro256StarStar(seed: 0)
        #expect((0..<4).map { _ in zero.next() } == [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0, 0x6AA5_94F1_262D_2D2C])
        var answer = Xoshiro256StarStar(seed: 42)
        #expect((0..<4).map { _ in answer.next() } == [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1, 0xECB8_AD47_03B3_60A1])
    }

    @Test("unit-interval doubles stay in [0, 1) and average one half")
    func unitInterval() {
        var rng = Xoshiro256StarStar(seed: 99)
        var sum = 0.0
        for _ in 0..<100_000 {
            let value = rng.nextUnitInterval()
            #expect(value >= 0 && value < 1)
            sum += value
        }
        #expect(abs(sum / 100_000 - 0.5) < 0.005)
    }
}
