import Testing
import ChatTemplates
import Foundation

/// The fixtures written by Deploy/scripts/make_template_fixtures.py from Python jinja2.
enum Fixtures {
    struct ChatCase: Sendable, CustomTestStringConvertible {
        let template: String
        let source: String
        let name: String
        let messages: [ChatMessage]
        let addGenerationPrompt: Bool
        let bosToken: String
        let eosToken: String
        let extraContextJSON: String
        let expected: String?
        let error: String?

        var testDescription: String { "\(template): \(name)" }
    }

    struct ConstructCase: Sendable, CustomTestStringConvertible {
        let name: String
        let source: String
        let contextJSON: String
        let expected: String?
        let error: String?
        let syntaxError: String?

        var testDescription: String { name }
    }

    private struct RawTemplate: Decodable {
        let template: String
        let cases: [RawChatCase]
    }

    private struct RawChatCase: Decodable {
        let name: String
        let messages: [ChatMessage]
        let add_generation_prompt: Bool
        let bos_token: String
        let eos_token: String
        let extra_context: String
        let expected: String?
        let error: String?
    }

    private struct RawConstruct: Decodable {
        let name: String
        let source: String
        let context: String
        let expected: String?
        let error: String?
        let syntax_error: String?
    }

    static var directory: URL? { Bundle.module.url(forResource: "Fixtures", withExtension: nil) }

    static func templateSource(_ file: String) throws -> String {
        guard let directory else { throw CocoaError(.fileNoSuchFile) }
        return try String(contentsOf: directory.appendingPathComponent("templates").appendingPathComponent(file),
                          encoding: .utf8)
    }

    private static func loadChatCases() throws -> [ChatCase] {
        guard let directory else { throw CocoaError(.fileNoSuchFile) }
        let data = try Data(contentsOf: directory.appendingPathComponent("chat_templates.json"))
        var cases: [ChatCase] = []
        for template in try JSONDecoder().decode([RawTemplate].self, from: data) {
            let source = try templateSource(template.template)
            for raw in template.cases {
                cases.append(ChatCase(
                    template: template.template, source: source, name: raw.name, messages: raw.messages,
                    addGenerationPrompt: raw.add_generation_prompt, bosToken: raw.bos_token, eosToken: raw.eos_token,
                    extraContextJSON: raw.extra_context, expected: raw.expected, error: raw.error))
            }
        }
        return cases
    }

    private static func loadConstructCases() throws -> [ConstructCase] {
        guard let directory else { throw CocoaError(.fileNoSuchFile) }
        let data = try Data(contentsOf: directory.appendingPathComponent("constructs.json"))
        return try JSONDecoder().decode([RawConstruct].self, from: data).map {
            ConstructCase(name: $0.name, source: $0.source, contextJSON: $0.context, expected: $0.expected,
                          error: $0.error, syntaxError: $0.syntax_error)
        }
    }

    /// Empty when the fixtures cannot be read; a separate test checks the counts so that cannot pass silently.
    static let chatCases: [ChatCase] = (try? loadChatCases()) ?? []
    static let constructCases: [ConstructCase] = (try? loadConstructCases()) ?? []

    /// A JSON object's fields as a template context.
    static func context(_ json: String) throws -> [String: TemplateValue] {
        guard case .object(let object) = try TemplateValue(jsonText: json) else { return [:] }
        var context: [String: TemplateValue] = [:]
        for (key, value) in object.fields { context[key] = value }
        return context
    }
}
