import ChatTemplates
import Foundation
import GGUF
import Tokenization

/// Turns a conversation into prompt tokens with the model's own chat template (`tokenizer.chat_template`),
/// as llama.cpp does: rendered with the generation prompt, then tokenized with special-token text recognised.
public struct ChatPrompt: Sendable {
    public let template: ChatTemplate
    public let tokenizer: Tokenizer

    /// Uses the template in `templateFile` (Jinja source, as `--chat-template FILE` names it) if given, else the
    /// GGUF's `tokenizer.chat_template`. Throws `.unsupportedModel` if neither exists or the template cannot be
    /// parsed.
    public init(file: GGUFFile, tokenizer: Tokenizer, templateFile: String? = nil) throws(InferenceError) {
        guard let template = try Self.template(file: file, templateFile: templateFile) else {
            throw InferenceError(.unsupportedModel, Self.missingTemplateMessage(file))
        }
        self.template = template
        self.tokenizer = tokenizer
    }

    /// The chat template to use: `templateFile`'s if given, else the GGUF's, else nil (a base model).
    public static func template(file: GGUFFile, templateFile: String? = nil) throws(InferenceError) -> ChatTemplate? {
        let source: String?
        let origin: String
        if let templateFile {
            origin = templateFile
            do { source = try String(contentsOfFile: templateFile, encoding: .utf8) } catch {
                throw InferenceError(.invalidArgument, "cannot read chat template \(templateFile)", cause: error)
            }
        } else {
            origin = "\(file.name)'s tokenizer.chat_template"
            do { source = try file.optionalString("tokenizer.chat_template") } catch {
                throw InferenceError(.invalidModel, "\(file.name): tokenizer.chat_template is not a string", cause: error)
            }
        }
        guard let source else { return nil }
        do { return try ChatTemplate(source: source) } catch {
            throw InferenceError(.unsupportedModel, "the chat template in \(origin) cannot be used", cause: error)
        }
    }

    /// What to tell someone who asked for a chat with a model that has no template.
    public static func missingTemplateMessage(_ file: GGUFFile) -> String {
        "\(file.name) has no chat template (no tokenizer.chat_template: a base model); give one with "
            + "--chat-template FILE, or complete a raw prompt (--prompt, /v1/completions)"
    }

    /// The conversation as text, ending with the assistant's generation prompt.
    public func render(_ messages: [ChatMessage]) throws(InferenceError) -> String {
        guard !messages.isEmpty else { throw InferenceError(.invalidArgument, "a chat needs at least one message") }
        let bos = tokenizer.bosID.map { tokenizer.tokenText($0) } ?? ""
        let eos = tokenizer.eosID.map { tokenizer.tokenText($0) } ?? ""
        do {
            return try template.render(messages: messages, addGenerationPrompt: true, bosToken: bos, eosToken: eos)
        } catch {
            throw InferenceError(.invalidArgument, "the chat template refused the messages", cause: error)
        }
    }

    /// Prompt tokens for the conversation, as the router tokenizes them (`Tokenizer.encodePrompt`).
    public func tokens(_ messages: [ChatMessage]) throws(InferenceError) -> [Int32] {
        tokenizer.encodePrompt(try render(messages))
    }
}
