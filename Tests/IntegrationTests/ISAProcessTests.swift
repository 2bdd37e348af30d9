import Foundation
import Testing

/// `BATON_ISA` seen from the command line: `baton inspect` reports the kernels a process runs, and a value the
/// CPU cannot honour stops the command with the reason instead of running other kernels.
@Suite("baton and BATON_ISA")
struct ISAProcessTests {
    static func inspect(_ environment: [String: String]) async throws -> (status: Int32, json: [String: Any], error: String) {
        let result = try await BatonProcess.run(["inspect", "--json"], environment: environment)
        let json = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any] ?? [:]
        return (result.status, json, result.error)
    }

    @Test("inspect reports the forced level, the CPU's best and OpenBLAS's core")
    func inspectReportsForcedLevel() async throws {
        let forced = try await Self.inspect(["BATON_ISA": "scalar"])
        #expect(forced.status == 0, "\(forced.error)")
        let kernels = try #require(forced.json["kernels"] as? [String: Any], "no kernels object in \(forced.json)")
        #expect(kernels["isa"] as? String == "scalar")
        #expect(kernels["forced"] as? Bool == true)
        #expect(["avx2", "avx512", "neon", "neon-dotprod", "scalar"].contains(kernels["cpu_isa"] as? String ?? ""))
        #expect(kernels.keys.contains("blas_core"))

        let automatic = try await Self.inspect(["BATON_ISA": "auto"])
        let best = try #require(automatic.json["kernels"] as? [String: Any])
        #expect(best["forced"] as? Bool == false)
        #expect(best["isa"] as? String == kernels["cpu_isa"] as? String)
    }

    @Test("an unknown level or one above the CPU's stops the command with a message naming the variable")
    func badValuesFail() async throws {
        let unknown = try await Self.inspect(["BATON_ISA": "sse9"])
        #expect(unknown.status != 0)
        #expect(unknown.error.contains("BATON_ISA=sse9 is not an instruction-set level"), "\(unknown.error)")
        #expect(unknown.error.contains("allowed values are auto, scalar"), "\(unknown.error)")

        // The level above the CPU's best (none above AVX-512 on x86-64: there the test stops here).
        let automatic = try await Self.inspect([:])
        let cpu = (automatic.json["kernels"] as? [String: Any])?["cpu_isa"] as? String
        let above = ["scalar": "avx2", "avx2": "avx512", "neon": "neon-dotprod"][cpu ?? ""]
        guard let above else { return }
        let tooHigh = try await Self.inspect(["BATON_ISA": above])
        #expect(tooHigh.status != 0)
        #expect(tooHigh.error.contains("BATON_ISA=\(above) asks for kernels this CPU cannot run: it runs up to \(cpu!)"),
                "\(tooHigh.error)")
    }
}
