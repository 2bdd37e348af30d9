import ChatTemplates
import Testing

@Suite("Chat templates render exactly as Python jinja2 does")
struct ChatTemplateFixtureTests {
    @Test("The fixtures hold 11 templates with 19 conversations each and 94 construct cases")
    func fixtureCounts() {
        #expect(Fixtures.chatCases.count == 209)
        #expect(Set(Fixtures.chatCases.map(\.template)).count == 11)
        #expect(Fixtures.constructCases.count == 94)
    }

    @Test("Every template and conversation renders byte for byte like jinja2, or fails with its message",
          arguments: Fixtures.chatCases)
    func chatCase(_ fixture: Fixtures.ChatCase) throws {
        let template = try ChatTemplate(source: fixture.source)
        let extra = try Fixtures.context(fixture.extraContextJSON)
        do {
            let rendered = try template.render(
                messages: fixture.messages, addGenerationPrompt: fixture.addGenerationPrompt,
                bosToken: fixture.bosToken, eosToken: fixture.eosToken, extraContext: extra)
            #expect(fixture.error == nil, "jinja2 raised \(fixture.error ?? "")")
            #expect(Array(rendered.utf8) == Array((fixture.expected ?? "").utf8))
            if rendered != fixture.expected { print("GOT:\n\(rendered)\nWANT:\n\(fixture.expected ?? "")") }
        } catch {
            #expect(fixture.error == error.message, "unexpected error: \(error)")
        }
    }

    @Test("Every interpreter construct case matches jinja2's output or error", arguments: Fixtures.constructCases)
    func constructCase(_ fixture: Fixtures.ConstructCase) throws {
        let template: ChatTemplate
        do {
            template = try ChatTemplate(source: fixture.source)
        } catch {
            #expect(fixture.syntaxError != nil, "parse failed: \(error)")
            #expect(error.code == .syntax || error.code == .unsupported)
            #expect(error.line != nil && error.column != nil)
            return
        }
        #expect(fixture.syntaxError == nil, "jinja2 rejects this template: \(fixture.syntaxError ?? "")")
        let context = try Fixtures.context(fixture.contextJSON)
        do {
            let rendered = try template.render(context: context)
            #expect(fixture.error == nil, "jinja2 raised \(fixture.error ?? "")")
            #expect(Array(rendered.utf8) == Array((fixture.expected ?? "").utf8))
            if rendered != fixture.expected { print("GOT:\n\(rendered)\nWANT:\n\(fixture.expected ?? "")") }
        } catch {
            #expect(fixture.error == error.message, "unexpected error: \(error)")
        }
    }
}
