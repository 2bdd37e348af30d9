import Foundation
import Testing

/// `baton bench model --json` keeps its contract: one JSON object on the last line with the engine's figures,
/// and the int8 peak figures consistent with the model's multiply-accumulates per token.
@Suite("baton bench model")
struct BenchModelProcessTests {
    @Test("the JSON line carries every figure and the peak figures agree with the model's MACs per token")
    func jsonContract() async throws {
        let result = try await BatonProcess.run(
            ["bench", "model", "--json", "--threads", "1", "--prompt-tokens", "16", "--decode-tokens", "4", "--repetitions", "1"],
            timeout: .seconds(120))
        #expect(result.status == 0, "bench model failed: \(result.error)")
        let last = result.output.split(separator: "\n").last.map(String.init) ?? ""
        let object = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any] ?? [:]
        func number(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }
        for key in ["prefill_tokens_per_second", "decode_tokens_per_second", "decode_batch8_tokens_per_second", "peak_rss_bytes"] {
            #expect((number(key) ?? 0) > 0, "\(key) missing or not positive in \(last)")
        }
        #expect(number("threads") == 1)
        // The kernels' level and OpenBLAS's core, as `baton inspect` reports them.
        #expect(["scalar", "avx2", "avx512", "neon", "neon-dotprod"].contains(object["isa"] as? String ?? ""), "\(last)")
        #expect(object["isa_forced"] is Bool && object["cpu_isa"] is String && object.keys.contains("blas_core"), "\(last)")
        // Present wherever the kernels use an int8 dot-product instruction (every level but scalar).
        guard object["isa"] as? String != "scalar" else {
            #expect(object["int8_peak_macs_per_second"] == nil, "\(last)")
            return
        }
        guard let peak = number("int8_peak_macs_per_second"), let used = number("decode_batch8_weight_macs_per_second"),
              let ceiling = number("decode_ceiling_tokens_per_second"), let batched = number("decode_batch8_tokens_per_second")
        else {
            Issue.record("int8 peak figures missing from \(last)")
            return
        }
        let perLayer: Double = 2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576
        let macsPerToken: Double = 30 * perLayer + 49_152 * 576
        #expect(abs(peak / ceiling / macsPerToken - 1) < 0.001)
        #expect(abs(used / batched / macsPerToken - 1) < 0.001)
        #expect(used < peak)
    }
}
