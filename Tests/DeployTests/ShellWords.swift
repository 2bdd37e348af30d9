/// A small POSIX-shell tokenizer, enough to find `baton` command lines in the scripts of the deploy files:
/// words with their quotes removed (`'…'`, `"…"`, backslash escapes, line continuations) and the control
/// operators that end a simple command (`;`, `&`, `&&`, `|`, `||`, newline, redirections). `$(…)` and `${…}`
/// are kept as text inside the word they belong to; comments (`# …` at the start of a word) are dropped.
enum ShellToken: Equatable, Sendable {
    case word(String)
    case `operator`(String)
}

enum ShellWords {
    static func tokens(_ script: String) throws(DeployCheckFailure) -> [ShellToken] {
        var tokens: [ShellToken] = []
        var word = ""
        var inWord = false
        var characters = Array(script)[...]

        func endWord() {
            if inWord { tokens.append(.word(word)) }
            word = ""
            inWord = false
        }

        while let character = characters.popFirst() {
            switch character {
            case "\\":
                guard let next = characters.popFirst() else { word.append("\\"); inWord = true; continue }
                if next != "\n" { word.append(next); inWord = true }
            case "'":
                inWord = true
                guard let end = characters.firstIndex(of: "'") else {
                    throw DeployCheckFailure("unterminated ' in shell text: \(script)")
                }
                word += String(characters[..<end])
                characters = characters[(end + 1)...]
            case "\"":
                inWord = true
                var closed = false
                while let inner = characters.popFirst() {
                    if inner == "\"" { closed = true; break }
                    if inner == "\\", let escaped = characters.first, "$`\"\\\n".contains(escaped) {
                        characters.removeFirst()
                        if escaped != "\n" { word.append(escaped) }
                    } else {
                        word.append(inner)
                    }
                }
                guard closed else { throw DeployCheckFailure("unterminated \" in shell text: \(script)") }
            case "$" where characters.first == "(" || characters.first == "{":
                // Substitutions may hold spaces and quotes of their own: keep them whole, balanced.
                inWord = true
                word.append(character)
                let open = characters.removeFirst(), close: Character = open == "(" ? ")" : "}"
                word.append(open)
                var depth = 1
                while depth > 0, let inner = characters.popFirst() {
                    word.append(inner)
                    if inner == open { depth += 1 } else if inner == close { depth -= 1 }
                }
                guard depth == 0 else { throw DeployCheckFailure("unterminated $\(open) in shell text: \(script)") }
            case "#" where !inWord:
                while let next = characters.first, next != "\n" { characters.removeFirst() }
            case " ", "\t":
                endWord()
            case "\n", ";", "&", "|", "<", ">":
                endWord()
                var symbol = String(character)
                if let next = characters.first, next == character, character != "\n" {
                    symbol.append(next)
                    characters.removeFirst()
                }
                tokens.append(.operator(symbol))
            default:
                word.append(character)
                inWord = true
            }
        }
        endWord()
        return tokens
    }

    /// The words of every simple command in the script that runs `baton` (directly, or after `exec`), from
    /// `baton` to the end of that command.
    static func batonCommands(in script: String) throws(DeployCheckFailure) -> [[String]] {
        var commands: [[String]] = []
        var simpleCommand: [String] = []
        func finish() {
            let start = simpleCommand.first == "exec" ? 1 : 0
            if simpleCommand.count > start, isBaton(simpleCommand[start]) {
                commands.append(Array(simpleCommand[start...]))
            }
            simpleCommand = []
        }
        for token in try tokens(script) {
            switch token {
            case .operator: finish()
            case .word(let word): simpleCommand.append(word)
            }
        }
        finish()
        return commands
    }

    static func isBaton(_ word: String) -> Bool {
        word == "baton" || word.hasSuffix("/baton")
    }
}
