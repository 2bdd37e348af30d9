import Foundation
import Testing

/// `Deploy/scripts/test-kernels.sh`: the C kernels against their scalar twins natively (every level this CPU has,
/// and each lower one forced with BATON_ISA) and for arm64 under qemu-user, with and without the dot-product
/// extension. This is the only place the NEON kernels run in the suite.
@Suite("C kernel twins, native and arm64 under qemu")
struct KernelTwinsScriptTests {
    @Test("every SIMD kernel matches its scalar twin natively and on arm64 (NEON with and without sdot)")
    func twinsPass() throws {
        let script = DeployFiles.url("Deploy/scripts/test-kernels.sh")
        let run = try ToolRun.run(URL(fileURLWithPath: "/bin/bash"), [script.path])
        #expect(run.status == 0, "test-kernels.sh failed:\n\(run.output)")
        // Each run ends with its tally; the arm64 runs must have detected the CPU qemu emulates.
        let tallies = run.standardOutput.split(separator: "\n").filter { $0.hasSuffix(" passed, 0 failed") }
        #expect(tallies.count >= 6, "expected at least six passing runs:\n\(run.output)")
        for name in ["arm64 (gcc), qemu -cpu max: neon-dotprod", "arm64 (gcc), qemu -cpu cortex-a53: neon"] {
            #expect(run.standardOutput.contains("== \(name)\n"), "no run \(name):\n\(run.output)")
        }
        #expect(run.standardOutput.contains("kernel twins: all "), "\(run.output)")
    }
}
