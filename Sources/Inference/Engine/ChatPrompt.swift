import ChatTemplates
import GGUF
import Tokenization

/// Turns a conversation into prompt tokens with the model's own chat template (`tokenizer.chat_template`),
/// as llama.cpp does: rendered with the generation prompt, then tokenized with special-token text recognised.
public struct ChatPrompt: Sendable {
    public let template: ChatTemplate
    public let tokenizer: Tokenizer

    /// Throws `.unsupportedModel` if the GGUF has no chat template or it cannot be parsed.
    public init(file: GGUFFile, tokenizer: Tokenizer) throws(InferenceError) {
        let source: String?
        do { source = try file.optionalString("tokenizer.chat_template") } catch {
            throw InferenceError(.invalidModel, "\(file.name): tokenizer.chat_template is not a string", cause: error)
        }
        guard let source else {
            throw InferenceError(.unsupportedModel, "\(file.name) has no chat template (tokenizer.chat_template)")
        }
        do { template = try ChatTemplate(source: source) } catch {
            throw InferenceError(.unsupportedModel, "\(file.name): its chat template cannot be used", cause: error)
        }
        self.tokenizer = tokenizer
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
