import Testing

@testable import Worker

@Suite("Packing prompts into prefill passes")
struct PrefillBatcherTests {
    @Test("whole prompts fill a pass in arrival order")
    func wholePromptsFill() {
        #expect(PrefillBatcher.plan(remaining: [45, 20, 30, 7], passSize: 512) == [45, 20, 30, 7])
        #expect(PrefillBatcher.plan(remaining: [300, 200, 12], passSize: 512) == [300, 200, 12])
    }

    @Test("a prompt that does not fit waits for the next pass, and so does everything behind it")
    func firstMisfitEndsThePass() {
        #expect(PrefillBatcher.plan(remaining: [100, 500, 10], passSize: 512) == [100])
        #expect(PrefillBatcher.plan(remaining: [10, 600], passSize: 512) == [10])
    }

    @Test("a prompt longer than a pass is split only when it opens the pass")
    func longPromptOpensPasses() {
        #expect(PrefillBatcher.plan(remaining: [1300, 10], passSize: 512) == [512])
        #expect(PrefillBatcher.plan(remaining: [276, 10, 226, 1], passSize: 512) == [276, 10, 226])
        #expect(PrefillBatcher.plan(remaining: [], passSize: 512) == [])
    }
}
