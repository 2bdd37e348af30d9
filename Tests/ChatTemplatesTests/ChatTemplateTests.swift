import ChatTemplates
import Foundation
import Testing

@Suite("ChatTemplate API and errors")
struct ChatTemplateTests {
    private func parseError(_ source: String) -> TemplateError? {
        do {
            _ = try ChatTemplate(source: source)
            return nil
        } catch {
            return error
        }
    }

    private func renderError(_ source: String, _ context: [String: TemplateValue] = [:]) -> TemplateError? {
        do {
            _ = try ChatTemplate(source: source).render(context: context)
            return nil
        } catch {
            return error
        }
    }

    @Test("Unsupported tags are rejected when parsing, naming the tag, line and column")
    func unsupportedTag() throws {
        let error = try #require(parseError("Hello\n  {% include 'other.jinja' %}"))
        #expect(error.code == .unsupported)
        #expect(error.message.contains("'include'"))
        #expect(error.line == 2)
        #expect(error.column == 6)
        #expect(error.description == "unsupported template construct: the 'include' tag is not supported (at 2:6)")
    }

    @Test("Call blocks, recursive loops and splatted arguments are reported as unsupported")
    func otherUnsupportedConstructs() throws {
        let call = try #require(parseError("{% call m() %}x{% endcall %}"))
        #expect(call.code == .unsupported && call.message.contains("'call'") && call.line == 1 && call.column == 4)
        let recursive = try #require(parseError("{% for x in xs recursive %}{% endfor %}"))
        #expect(recursive.code == .unsupported && recursive.message.contains("recursive"))
        let splat = try #require(parseError("{{ f(*args) }}"))
        #expect(splat.code == .unsupported && splat.message.contains("*args"))
    }

    @Test("Unknown filters and tests are errors at parse time with their position")
    func unknownFilterAndTest() throws {
        let filter = try #require(parseError("{{ x }}\n{{ x | trim | shout }}"))
        #expect(filter.code == .unsupported)
        #expect(filter.message == "No filter named 'shout'.")
        #expect(filter.line == 2 && filter.column == 15)
        let test = try #require(parseError("{% if x is frobbed %}{% endif %}"))
        #expect(test.message == "No test named 'frobbed'." && test.line == 1 && test.column == 12)
    }

    @Test("Unknown tags are syntax errors naming the tag")
    func unknownTag() throws {
        let error = try #require(parseError("a\nb {% frobnicate x %}"))
        #expect(error.code == .syntax)
        #expect(error.message == "Encountered unknown tag 'frobnicate'.")
        #expect(error.line == 2 && error.column == 6)
    }

    @Test("An unclosed block points at the tag that needs closing")
    func unclosedBlock() throws {
        let error = try #require(parseError("{% for m in messages %}\n  {% if m %}x\n{% endfor %}"))
        #expect(error.code == .syntax)
        #expect(error.message == "Encountered unknown tag 'endfor'. Jinja was looking for the following tags: "
            + "'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'.")
        #expect(error.line == 3 && error.column == 4)
        let eof = try #require(parseError("{% if true %}x"))
        #expect(eof.message.contains("The innermost block that needs to be closed is 'if'.") && eof.line == 1)
    }

    @Test("Lexical errors carry their position")
    func lexicalErrors() throws {
        let string = try #require(parseError("ok\n{{ 'unterminated }}"))
        #expect(string.code == .syntax && string.line == 2 && string.column == 4)
        let comment = try #require(parseError("x {# never closed"))
        #expect(comment.code == .syntax && comment.message == "Missing end of comment tag" && comment.column == 3)
        let tag = try #require(parseError("{{ 1 + }}"))
        #expect(tag.code == .syntax && tag.line == 1)
        let brace = try #require(parseError("{{ (1 }}"))
        #expect(brace.code == .syntax)
    }

    @Test("Hostile nesting is refused instead of exhausting the stack")
    func deepNesting() throws {
        let parentheses = String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000)
        #expect(parseError("{{ \(parentheses) }}")?.code == .unsupported)
        let chain = "{{ " + Array(repeating: "1", count: 5000).joined(separator: " + ") + " }}"
        #expect(parseError(chain)?.code == .unsupported)
        let blocks = String(repeating: "{% if true %}", count: 1000) + String(repeating: "{% endif %}", count: 1000)
        #expect(parseError(blocks)?.code == .unsupported)
        #expect(parseError("{{ " + String(repeating: "not ", count: 5000) + "x }}")?.code == .unsupported)
        let shallow = String(repeating: "(", count: 50) + "1" + String(repeating: ")", count: 50)
        #expect(try ChatTemplate(source: "{{ \(shallow) }}").render(context: [:]) == "1")
    }

    @Test("Run-time errors carry jinja2's message and the position of the failing expression")
    func runtimeErrorPosition() throws {
        let error = try #require(renderError("line one\n  {{ user.name + 1 }}", ["user": ["id": 1]]))
        #expect(error.code == .undefined)
        #expect(error.message == "'dict object' has no attribute 'name'")
        #expect(error.line == 2)
        let typeError = try #require(renderError("{% set x = 'a' %}{{ x - 1 }}"))
        #expect(typeError.code == .type)
        #expect(typeError.message == "unsupported operand type(s) for -: 'str' and 'int'")
        #expect(typeError.line == 1 && typeError.column == 23)
    }

    @Test("raise_exception throws the template's message with the raised code")
    func raiseException() throws {
        let error = try #require(renderError("{% if true %}\n{{ raise_exception('Only user and assistant roles') }}{% endif %}"))
        #expect(error.code == .raised)
        #expect(error.message == "Only user and assistant roles")
        #expect(error.line == 2 && error.column == 19)
    }

    @Test("Rendering passes tools and documents as none, so they are defined, like Hugging Face")
    func defaultContext() throws {
        let template = try ChatTemplate(source:
            "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ bos_token }}{{ eos_token }} {{ add_generation_prompt }} {{ messages | length }} {{ date_string | default('none given') }}")
        let rendered = try template.render(messages: [.user("hi")], addGenerationPrompt: true, bosToken: "<s>",
                                           eosToken: "</s>")
        #expect(rendered == "True True True <s></s> True 1 none given")
        let withTools = try template.render(messages: [], addGenerationPrompt: false,
                                            extraContext: ["tools": [["name": "f"]], "date_string": "today"])
        #expect(withTools == "True False True  False 0 today")
    }

    @Test("Messages reach the template with optional fields only when set, tool-call arguments parsed in order")
    func messageShape() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m | tojson }}\n{% endfor %}")
        let messages = [
            ChatMessage.user("hi"),
            ChatMessage(role: "assistant", content: "", toolCalls: [
                ChatToolCall(id: "c1", name: "f", arguments: #"{"z": 1, "a": [true, null, 2.5]}"#),
                ChatToolCall(name: "g", arguments: "not json"),
            ]),
            ChatMessage(role: "tool", content: "42", name: "f", toolCallID: "c1"),
        ]
        let rendered = try template.render(messages: messages, addGenerationPrompt: false)
        #expect(rendered == """
            {"role": "user", "content": "hi"}
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"z": 1, "a": [true, null, 2.5]}}}, {"type": "function", "function": {"name": "g", "arguments": "not json"}}]}
            {"role": "tool", "content": "42", "name": "f", "tool_call_id": "c1"}

            """)
    }

    @Test("ChatMessage encodes with OpenAI's snake_case keys and round-trips")
    func messageCoding() throws {
        let message = ChatMessage(role: "tool", content: "x", name: "n", toolCallID: "id9",
                                  toolCalls: [ChatToolCall(id: "a", name: "f", arguments: "{}")])
        let data = try JSONEncoder().encode(message)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"tool_call_id\":\"id9\"") && text.contains("\"tool_calls\""))
        #expect(try JSONDecoder().decode(ChatMessage.self, from: data) == message)
        let plain = try JSONDecoder().decode(ChatMessage.self, from: Data(#"{"role":"user","content":"c"}"#.utf8))
        #expect(plain == .user("c"))
    }

    @Test("JSON text parses into ordered values, and bad JSON is an invalid-argument error")
    func jsonParsing() throws {
        let value = try TemplateValue(jsonText: #"{"b": 1, "a": {"y": "\u00e9\ud83d\ude00", "x": [1.5, -2, 1e3, false, null]}}"#)
        guard case .object(let object) = value else {
            Issue.record("expected an object")
            return
        }
        #expect(object.keys == ["b", "a"])
        #expect(object["a"] == ["y": "é😀", "x": [1.5, -2, 1000.0, false, nil]])
        #expect(value.description == #"{"b": 1, "a": {"y": "é😀", "x": [1.5, -2, 1000.0, false, null]}}"#)
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"\\x\"", "1 2", String(repeating: "[", count: 600)] {
            #expect(throws: TemplateError.self) { try TemplateValue(jsonText: bad) }
            let error = try? TemplateValue(jsonText: bad)
            #expect(error == nil)
        }
        do {
            _ = try TemplateValue(jsonText: "[1,]")
        } catch {
            #expect(error.code == .invalidArgument && error.message.contains("offset 3"))
        }
    }

    @Test("A template is Sendable and renders the same from concurrent tasks")
    func concurrentRendering() async throws {
        let template = try ChatTemplate(source: try Fixtures.templateSource("qwen2.5-7b-instruct.jinja"))
        let expected = try template.render(messages: [.system("s"), .user("u")], addGenerationPrompt: true)
        let results = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<8 {
                group.addTask { try? template.render(messages: [.system("s"), .user("u")], addGenerationPrompt: true) }
            }
            var collected: [String?] = []
            for await result in group { collected.append(result) }
            return collected
        }
        #expect(results.count == 8 && results.allSatisfy { $0 == expected })
        #expect(expected.hasSuffix("<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"))
    }

    @Test("strftime_now formats the current local date")
    func strftimeNow() throws {
        let rendered = try ChatTemplate(source: "{{ strftime_now('%Y') }}").render(context: [:])
        let year = Calendar.current.component(.year, from: Date())
        #expect(rendered == String(year) || rendered == String(year + 1))
    }
}
