import Foundation
import Placement

/// The requests of a `bench serve` run: their prompts, output lengths, conversations and (open loop) arrival times.
///
/// A workload comes from a named preset (synthetic prompts of a fixed length) or from a trace file. How its
/// requests are released is the level's business (``ServeBenchmark/LevelSpec``): a fixed number of clients in a
/// closed loop, Poisson arrivals at a rate, or the trace's own timestamps.
public struct ServeWorkload: Sendable, Equatable {
    /// One request.
    public struct Request: Sendable, Equatable {
        public enum Prompt: Sendable, Equatable {
            /// About this many tokens of filler text (one common English word is one token in the usual BPE vocabularies;
            /// the server's count is in the record).
            case words(Int)
            case text(String)
        }

        /// Position in the workload (also the sampling seed's offset and the prompt's variation).
        public var index: Int
        /// Seconds after the start when a trace wants it sent; nil for synthetic workloads.
        public var timestamp: Double?
        /// The new user message of this turn. A later turn of a conversation is sent after the whole history: every
        /// earlier turn's user message and the reply the server actually gave.
        public var prompt: Prompt
        public var maxTokens: Int
        public var conversation: String?
        public var turn: Int?
        /// The index of the conversation's previous turn, which must finish before this one is sent.
        public var follows: Int?
        /// The system message that opens the conversation (sent before the first turn's user message; later turns
        /// carry it in their history). The same text across conversations, as an application's system prompt is.
        public var system: String?

        public init(
            index: Int, timestamp: Double? = nil, prompt: Prompt, maxTokens: Int, conversation: String? = nil,
            turn: Int? = nil, follows: Int? = nil, system: String? = nil
        ) {
            self.index = index
            self.timestamp = timestamp
            self.prompt = prompt
            self.maxTokens = maxTokens
            self.conversation = conversation
            self.turn = turn
            self.follows = follows
            self.system = system
        }
    }

    /// Named synthetic workloads.
    public struct Preset: Sendable, Equatable, Codable {
        public var name: String
        public var promptWords: Int
        public var maxTokens: Int
        /// Turns per conversation (1: independent requests).
        public var turns: Int
        /// Words of a system prompt every conversation opens with, the same for all of them (0: none).
        public var systemWords: Int

        public init(name: String, promptWords: Int, maxTokens: Int, turns: Int = 1, systemWords: Int = 0) {
            self.name = name
            self.promptWords = promptWords
            self.maxTokens = maxTokens
            self.turns = turns
            self.systemWords = systemWords
        }

        enum CodingKeys: String, CodingKey {
            case name, promptWords = "prompt_words", maxTokens = "max_tokens", turns, systemWords = "system_words"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            promptWords = try container.decode(Int.self, forKey: .promptWords)
            maxTokens = try container.decode(Int.self, forKey: .maxTokens)
            turns = try container.decode(Int.self, forKey: .turns)
            // Reports written before system prompts existed have none.
            systemWords = try container.decodeIfPresent(Int.self, forKey: .systemWords) ?? 0
        }

        /// A chat message of ~100 words answered in 64 tokens.
        public static let shortChat = Preset(name: "short-chat", promptWords: 100, maxTokens: 64)
        /// A 2 000-word document and 128 tokens of answer: prefill-heavy, where splitting should pay.
        public static let longPrompt = Preset(name: "long-prompt", promptWords: 2000, maxTokens: 128)
        /// Chat sessions: conversations of six turns of ~100 words each over a shared ~500-word system prompt, 64
        /// tokens per reply, the history (the replies actually given included) resent every turn, conversations
        /// interleaved. 192 requests make 32 conversations. What a prefix cache is for: each turn repeats all but
        /// its last ~170 tokens.
        public static let multiTurn = Preset(name: "multi-turn", promptWords: 100, maxTokens: 64, turns: 6, systemWords: 500)

        public static let all: [Preset] = [.shortChat, .longPrompt, .multiTurn]

        public static func named(_ name: String) throws(BenchmarkError) -> Preset {
            guard let preset = all.first(where: { $0.name == name }) else {
                throw BenchmarkError(
                    .invalidArgument, "unknown preset \"\(name)\" (expected \(all.map(\.name).joined(separator: ", ")))")
            }
            return preset
        }
    }

    public var requests: [Request]

    public init(requests: [Request]) {
        self.requests = requests
    }

    /// `count` requests shaped by `preset`. With several turns they make ⌈count / turns⌉ conversations, interleaved:
    /// request i is turn i / conversations of conversation i % conversations, so every conversation's first turn is
    /// released before any second turn (as many users chatting at once), and a conversation's turns are
    /// `conversations` requests apart. With a system prompt, each conversation's first turn opens with it.
    public static func synthetic(_ preset: Preset, count: Int) -> ServeWorkload {
        let turns = max(1, preset.turns)
        let conversations = max(1, (count + turns - 1) / turns)
        let system = preset.systemWords > 0 ? systemPrompt(words: preset.systemWords) : nil
        return ServeWorkload(requests: (0..<count).map { index in
            guard turns > 1 else {
                return Request(index: index, prompt: .words(preset.promptWords), maxTokens: preset.maxTokens, system: system)
            }
            let turn = index / conversations
            return Request(
                index: index, prompt: .words(preset.promptWords), maxTokens: preset.maxTokens,
                conversation: "c\(index % conversations)", turn: turn,
                follows: turn > 0 ? index - conversations : nil, system: turn == 0 ? system : nil)
        })
    }

    /// About `words` words of an application's system prompt: the same text every time.
    public static func systemPrompt(words count: Int) -> String {
        let words = ["assistant", "answer", "clearly", "briefly", "politely", "accurate", "helpful", "facts", "sources", "careful"]
        var text = "You are a helpful assistant for a travel company. Guidelines:"
        for i in 0..<max(0, count - 10) { text += " " + words[(i * 3 + i / words.count) % words.count] }
        return text + ". Follow them in every reply."
    }

    /// Arrival times in seconds of `count` requests of a Poisson process of `rate` requests per second: exponential
    /// gaps drawn from SplitMix64 seeded with `seed`, so the same seed gives the same schedule on every machine.
    public static func poissonArrivals(count: Int, rate: Double, seed: UInt64) -> [Double] {
        var generator = SeededGenerator(seed: seed)
        var time = 0.0
        return (0..<count).map { _ in
            // 53 random bits → u in (0, 1]; −ln(u)/rate is an exponential gap.
            let u = (Double(generator.next() >> 11) + 1) / 9_007_199_254_740_992
            time += -log(u) / rate
            return time
        }
    }
}

// MARK: - Traces

extension ServeWorkload {
    /// Parses a JSONL trace, one request per line, in the Mooncake trace's field names:
    ///
    ///     {"timestamp": 0, "input_length": 512, "output_length": 64}
    ///     {"timestamp": 1250, "text": "Summarise …", "output_length": 128, "conversation_id": "a", "turn": 0}
    ///
    /// - `timestamp`: milliseconds after the start (a number ≥ 0); required.
    /// - `input_length` (tokens of filler text, ≥ 1) or `text` (the user message): exactly one.
    /// - `output_length`: `max_tokens`, ≥ 1; required.
    /// - `conversation_id` (string or integer) and `turn` (integer ≥ 0): optional; a later turn goes out after the
    ///   earlier one has been answered, carrying the history. Without `turn`, a conversation's lines are its turns
    ///   in file order.
    ///
    /// Blank lines are skipped and other keys (Mooncake's `hash_ids`) ignored. Requests are ordered by timestamp.
    /// - Throws: ``BenchmarkError`` `.invalidTrace` naming `source`, the line and the key.
    public static func trace(_ text: String, source: String) throws(BenchmarkError) -> ServeWorkload {
        struct Line {
            var number: Int
            var timestamp: Double
            var prompt: Request.Prompt
            var maxTokens: Int
            var conversation: String?
            var turn: Int?
        }
        var lines: [Line] = []
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let content = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if content.isEmpty { continue }
            func fail(_ message: String) -> BenchmarkError {
                BenchmarkError(.invalidTrace, "\(source) line \(number): \(message)")
            }
            guard let object = try? JSONDecoder().decode([String: TraceValue].self, from: Data(content.utf8)) else {
                throw fail("not a JSON object")
            }
            func integer(_ key: String, minimum: Int) throws(BenchmarkError) -> Int? {
                guard let value = object[key] else { return nil }
                guard case .number(let number) = value, let exact = Int(exactly: number), exact >= minimum else {
                    throw fail("\"\(key)\" must be an integer ≥ \(minimum), got \(value)")
                }
                return exact
            }
            guard let stamp = object["timestamp"] else { throw fail("missing \"timestamp\" (milliseconds after the start)") }
            guard case .number(let milliseconds) = stamp, milliseconds.isFinite, milliseconds >= 0 else {
                throw fail("\"timestamp\" must be a number of milliseconds ≥ 0, got \(stamp)")
            }
            let prompt: Request.Prompt
            switch (try integer("input_length", minimum: 1), object["text"]) {
            case (let length?, nil): prompt = .words(length)
            case (nil, let text?):
                guard case .string(let string) = text, !string.isEmpty else { throw fail("\"text\" must be a non-empty string") }
                prompt = .text(string)
            case (nil, nil): throw fail("needs \"input_length\" (tokens) or \"text\"")
            case (_?, _?): throw fail("has both \"input_length\" and \"text\"; give one")
            }
            guard let output = try integer("output_length", minimum: 1) else { throw fail("missing \"output_length\"") }
            var conversation: String?
            switch object["conversation_id"] {
            case nil: break
            case .string(let string)? where !string.isEmpty: conversation = string
            case .number(let number)? where Int(exactly: number) != nil: conversation = String(Int(exactly: number)!)
            case let other?: throw fail("\"conversation_id\" must be a string or an integer, got \(other)")
            }
            let turn = try integer("turn", minimum: 0)
            if turn != nil, conversation == nil { throw fail("\"turn\" without \"conversation_id\"") }
            lines.append(Line(
                number: number, timestamp: milliseconds / 1000, prompt: prompt, maxTokens: output,
                conversation: conversation, turn: turn))
        }
        guard !lines.isEmpty else { throw BenchmarkError(.invalidTrace, "\(source): no requests (the file is empty)") }

        // Turns in order per conversation: explicit turn numbers, else file order; a repeated turn is an error.
        var byConversation: [String: [Int]] = [:]
        for (position, line) in lines.enumerated() {
            if let conversation = line.conversation { byConversation[conversation, default: []].append(position) }
        }
        var turnOf: [Int: Int] = [:]
        var previousOf: [Int: Int] = [:]
        for (conversation, positions) in byConversation {
            let explicit = positions.filter { lines[$0].turn != nil }
            guard explicit.isEmpty || explicit.count == positions.count else {
                let line = lines[positions.first { lines[$0].turn == nil }!].number
                throw BenchmarkError(
                    .invalidTrace, "\(source) line \(line): conversation \"\(conversation)\" numbers some turns but not this one")
            }
            let ordered = explicit.isEmpty ? positions : positions.sorted { lines[$0].turn! < lines[$1].turn! }
            for (rank, position) in ordered.enumerated() {
                if rank > 0, let turn = lines[position].turn, turn == lines[ordered[rank - 1]].turn {
                    throw BenchmarkError(
                        .invalidTrace,
                        "\(source) line \(lines[position].number): conversation \"\(conversation)\" has turn \(turn) twice "
                            + "(also line \(lines[ordered[rank - 1]].number))")
                }
                if rank > 0, lines[position].timestamp < lines[ordered[rank - 1]].timestamp {
                    throw BenchmarkError(
                        .invalidTrace,
                        "\(source) line \(lines[position].number): a later turn of conversation \"\(conversation)\" is timestamped "
                            + "before its previous turn (line \(lines[ordered[rank - 1]].number))")
                }
                turnOf[position] = lines[position].turn ?? rank
                if rank > 0 { previousOf[position] = ordered[rank - 1] }
            }
        }
        let order = lines.indices.sorted { (lines[$0].timestamp, $0) < (lines[$1].timestamp, $1) }
        var indexOf: [Int: Int] = [:]
        for (index, position) in order.enumerated() { indexOf[position] = index }
        return ServeWorkload(requests: order.enumerated().map { index, position in
            let line = lines[position]
            return Request(
                index: index, timestamp: line.timestamp, prompt: line.prompt, maxTokens: line.maxTokens,
                conversation: line.conversation, turn: turnOf[position], follows: previousOf[position].map { indexOf[$0]! })
        })
    }

    /// Reads and parses a trace file (see ``trace(_:source:)``).
    public static func trace(file path: String) throws(BenchmarkError) -> ServeWorkload {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BenchmarkError(.invalidTrace, "cannot read the trace \(path)", cause: error)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw BenchmarkError(.invalidTrace, "\(path) is not UTF-8 text")
        }
        return try trace(text, source: path)
    }
}

/// One JSON value of a trace line, as JSONDecoder reads it: a number is never a Boolean and the reverse.
private enum TraceValue: Decodable, CustomStringConvertible {
    case bool(Bool)
    case number(Double)
    case string(String)
    case null
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else {
            self = .other  // an array or object: no field of a trace takes one (Mooncake's hash_ids is ignored)
        }
    }

    var description: String {
        switch self {
        case .bool(let value): String(value)
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
        case .string(let value): "\"\(value)\""
        case .null: "null"
        case .other: "an array or object"
        }
    }
}
