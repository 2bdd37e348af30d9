import CKernels
import Foundation
import Testing
@testable import Inference

/// `BATON_ISA` parsing (pure, so every CPU kind is tried on any machine) and the selection this process runs.
@Suite("Kernel ISA selection")
struct ISASelectionTests {
    static func parse(_ value: String?, cpu: bk_isa) -> (isa: bk_isa?, message: String) {
        var isa = BK_ISA_SCALAR
        var message = [CChar](repeating: 0, count: 256)
        let status = value.map { bk_isa_parse($0, cpu, &isa, &message, message.count) }
            ?? bk_isa_parse(nil, cpu, &isa, &message, message.count)
        return (status == 0 ? isa : nil, String(cString: message))
    }

    @Test("unset, empty and auto mean the CPU's best; a level at or below it is taken as is")
    func acceptedValues() {
        for cpu in architectureISAs {
            for value in [nil, "", "auto"] { #expect(Self.parse(value, cpu: cpu).isa == cpu, "\(value ?? "unset") on \(isaName(cpu))") }
            for isa in architectureISAs.prefix(through: architectureISAs.firstIndex(of: cpu)!) {
                #expect(Self.parse(isaName(isa), cpu: cpu).isa == isa, "\(isaName(isa)) on \(isaName(cpu))")
            }
        }
    }

    @Test("a level the CPU lacks is refused, naming the variable, the value, what is allowed and what the CPU runs")
    func levelAboveTheCPU() throws {
        let top = try #require(architectureISAs.last)
        guard architectureISAs.count > 1 else { return }
        let cpu = architectureISAs[architectureISAs.count - 2]
        let result = Self.parse(isaName(top), cpu: cpu)
        #expect(result.isa == nil)
        let allowed = (["auto"] + architectureISAs.dropLast().map(isaName)).joined(separator: ", ")
        #expect(result.message == "BATON_ISA=\(isaName(top)) asks for kernels this CPU cannot run: it runs up to "
            + "\(isaName(cpu)) (allowed values here: \(allowed))")
    }

    @Test("a value that names no level of this architecture is refused with every allowed value")
    func unknownValues() {
        let allowed = (["auto"] + architectureISAs.map(isaName)).joined(separator: ", ")
        #if arch(x86_64)
        let foreign = ["neon", "neon-dotprod", "AVX2", "sse4", " avx2"]
        let architecture = "x86-64"
        #else
        let foreign = ["avx2", "avx512", "NEON", "sve"]
        let architecture = "arm64"
        #endif
        for value in foreign {
            let result = Self.parse(value, cpu: BK_ISA_SCALAR)
            #expect(result.isa == nil, "\(value)")
            #expect(result.message == "BATON_ISA=\(value) is not an instruction-set level of \(architecture): allowed "
                + "values are \(allowed) (this CPU runs up to scalar)")
        }
        // The message is truncated, never overrun, in a small buffer.
        var isa = BK_ISA_SCALAR
        var small = [CChar](repeating: 1, count: 12)
        #expect(bk_isa_parse("bogus", BK_ISA_SCALAR, &isa, &small, small.count) == -1)
        #expect(String(cString: small) == "BATON_ISA=b")
    }

    @Test("the process runs what BATON_ISA asks for, and an ISA of another architecture or above the cap runs the cap")
    func processSelection() throws {
        let value = ProcessInfo.processInfo.environment["BATON_ISA"]
        let selection = Kernels.selection
        #expect(selection.forced == (value.map { !$0.isEmpty && $0 != "auto" } ?? false))
        guard bk_isa_error() == nil else {
            // This test process was started with an unusable BATON_ISA: the engines refuse to start.
            #expect(throws: InferenceError.self) { try Kernels.checkSelection() }
            #expect(Kernels.isa == BK_ISA_SCALAR)
            return
        }
        try Kernels.checkSelection()
        #expect(selection.isa == (value.flatMap { $0.isEmpty || $0 == "auto" ? nil : $0 } ?? selection.cpu))
        #expect(isaName(Kernels.isa) == selection.isa)
        #expect(coveredISAs().last == Kernels.isa)
        for isa in architectureISAs { #expect((bk_isa_supported(isa) != 0) == (kernelSkipReason(isa) == nil)) }
        #if arch(x86_64)
        #expect(bk_isa_supported(BK_ISA_NEON) == 0 && bk_isa_supported(BK_ISA_NEON_DOTPROD) == 0)
        #else
        #expect(bk_isa_supported(BK_ISA_AVX2) == 0 && bk_isa_supported(BK_ISA_AVX512) == 0)
        #endif
        #expect(selection.description.hasPrefix("\(selection.isa) ("))
    }
}
