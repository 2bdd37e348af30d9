import ChatTemplates
import Testing

@Suite("Broken and hostile templates give errors, never crashes")
struct RobustnessTests {
    /// SplitMix64: a small deterministic generator so failures reproduce.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private static let fragments: [String] = [
        "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "(", ")", "[", "]", "{", "}", "'", "\"", "|", ".", ",",
        " if ", " else ", " endif ", " for ", " in ", " endfor ", " not ", " is ", "loop.", "messages[", "ns.",
        "|tojson", "|length", "|trim", " ~ ", " + ", " * 99999", " ** 99", "\\", "\n", "\u{0}", "é", "😀", "-1",
    ]

    private func exercise(_ source: String) {
        do {
            let template = try ChatTemplate(source: source)
            _ = try template.render(
                messages: [.system("sys"), .user("hi"), .assistant("ok"), .user("again")], addGenerationPrompt: true,
                bosToken: "<s>", eosToken: "</s>", extraContext: ["tools": [["type": "function", "function": ["name": "f"]]]])
        } catch {
            #expect(!error.message.isEmpty)
            if error.code == .syntax { #expect(error.line != nil && error.column != nil) }
        }
    }

    @Test("Thousands of mutated and truncated real templates parse and render or fail cleanly",
          arguments: ["llama-3.1-8b-instruct.jinja", "qwen2.5-7b-instruct.jinja", "mistral-7b-instruct-v0.3.jinja",
                      "gemma-2-2b-it.jinja", "qwen3-0.6b.jinja", "deepseek-r1-distill-qwen-32b.jinja"])
    func mutations(_ file: String) throws {
        let source = Array(try Fixtures.templateSource(file))
        var generator = SeededGenerator(state: UInt64(source.count))
        for cut in stride(from: 0, to: source.count, by: max(1, source.count / 150)) {
            exercise(String(source[..<cut]))
        }
        for _ in 0..<400 {
            var mutant = source
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0...mutant.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0 where position < mutant.count:
                    mutant.removeSubrange(position..<min(mutant.count, position + Int.random(in: 1...8, using: &generator)))
                case 1:
                    mutant.insert(contentsOf: Self.fragments.randomElement(using: &generator)!, at: position)
                default:
                    let from = Int.random(in: 0..<mutant.count, using: &generator)
                    let piece = mutant[from..<min(mutant.count, from + 12)]
                    mutant.insert(contentsOf: piece, at: min(position, mutant.count))
                }
            }
            exercise(String(mutant))
        }
    }

    @Test("Huge repetitions and ranges are refused with an error")
    func resourceLimits() throws {
        for source in ["{{ 'ab' * 100000000000 }}", "{{ [1, 2] * 99999999999 }}", "{{ range(1000000000) | length }}",
                       "{{ 'x' | indent(1000000000) }}", "{{ 2 ** 64 }}", "{{ (-1) ** 9223372036854775807 }}"] {
            do {
                let rendered = try ChatTemplate(source: source).render(context: [:])
                #expect(source.contains("(-1)") && rendered == "-1", "rendered \(source) to \(rendered.prefix(40))")
            } catch {
                #expect(error.code == .type, "\(source): \(error)")
            }
        }
    }
}
