import Foundation

/// One lexical token of a template, with where it starts.
struct Token: Sendable {
    enum Kind: Sendable, Equatable {
        case data(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case eof
    }

    var kind: Kind
    var position: SourcePosition
}

/// Splits template source into data and tag tokens, applying jinja2's whitespace rules as Hugging Face
/// configures them: `trim_blocks` (the first newline after a block or comment tag is dropped),
/// `lstrip_blocks` (spaces and tabs before a block or comment tag at the start of a line are dropped),
/// `-` markers (all whitespace on that side is dropped), `+` markers (lstrip disabled), newlines
/// normalized to `\n`, and one trailing newline of the source removed (`keep_trailing_newline=False`).
struct Lexer {
    private let src: [Unicode.Scalar]
    private let lineStarts: [Int]
    private var pos = 0
    private var tokens: [Token] = []

    init(source: String) {
        var normalized: [Unicode.Scalar] = []
        normalized.reserveCapacity(source.unicodeScalars.count)
        var previousWasCR = false
        for scalar in source.unicodeScalars {
            if scalar == "\r" {
                normalized.append("\n")
                previousWasCR = true
                continue
            }
            if scalar == "\n" && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = false
            normalized.append(scalar)
        }
        if normalized.last == "\n" { normalized.removeLast() }
        src = normalized
        var starts = [0]
        for (index, scalar) in normalized.enumerated() where scalar == "\n" { starts.append(index + 1) }
        lineStarts = starts
    }

    func position(_ offset: Int) -> SourcePosition {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if lineStarts[mid] <= offset { low = mid } else { high = mid - 1 }
        }
        return SourcePosition(line: low + 1, column: offset - lineStarts[low] + 1)
    }

    private func error(_ message: String, at offset: Int) -> TemplateError {
        let p = position(offset)
        return TemplateError(.syntax, message, line: p.line, column: p.column)
    }

    private func at(_ offset: Int, _ text: String) -> Bool {
        var i = offset
        for scalar in text.unicodeScalars {
            guard i < src.count, src[i] == scalar else { return false }
            i += 1
        }
        return true
    }

    private func text(_ range: Range<Int>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: src[range])
        return String(view)
    }

    /// Identifier characters: ASCII fast path, then Unicode letters (as Python identifiers allow).
    private static func isNameStart(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.value < 0x80 { return scalar == "_" || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) }
        return scalar.properties.isAlphabetic
    }

    private static func isNameContinue(_ scalar: Unicode.Scalar) -> Bool {
        isNameStart(scalar) || ("0"..."9").contains(scalar)
    }

    mutating func tokenize() throws(TemplateError) -> [Token] {
        var lineStarting = true
        while pos < src.count {
            var tagStart = pos
            var kind: Unicode.Scalar = " "
            while tagStart + 1 < src.count {
                if src[tagStart] == "{", ["{", "%", "#"].contains(src[tagStart + 1]) {
                    kind = src[tagStart + 1]
                    break
                }
                tagStart += 1
            }
            if kind == " " {
                emitData(pos..<src.count)
                pos = src.count
                break
            }
            let sign: Unicode.Scalar? = tagStart + 2 < src.count && (src[tagStart + 2] == "-" || src[tagStart + 2] == "+")
                ? src[tagStart + 2] : nil
            var dataEnd = tagStart
            if sign == "-" {
                while dataEnd > pos, PythonFormat.isSpace(src[dataEnd - 1]) { dataEnd -= 1 }
            } else if sign != "+" && kind != "{" {
                dataEnd = lstripped(pos..<tagStart, lineStarting: lineStarting)
            }
            emitData(pos..<dataEnd)
            pos = tagStart + 2 + (sign == nil ? 0 : 1)
            switch kind {
            case "#":
                lineStarting = try skipComment(openedAt: tagStart)
            case "%":
                if let rawEnd = rawBlockStart() {
                    pos = rawEnd
                    lineStarting = try lexRaw(openedAt: tagStart)
                } else {
                    tokens.append(Token(kind: .blockBegin, position: position(tagStart)))
                    lineStarting = try lexTag(block: true, openedAt: tagStart)
                }
            default:
                tokens.append(Token(kind: .variableBegin, position: position(tagStart)))
                lineStarting = try lexTag(block: false, openedAt: tagStart)
            }
        }
        tokens.append(Token(kind: .eof, position: position(src.count)))
        return tokens
    }

    private mutating func emitData(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        tokens.append(Token(kind: .data(text(range)), position: position(range.lowerBound)))
    }

    /// lstrip_blocks: where the data before a block tag ends once trailing spaces on the tag's line go.
    private func lstripped(_ range: Range<Int>, lineStarting: Bool) -> Int {
        var lineStart = range.upperBound
        while lineStart > range.lowerBound, src[lineStart - 1] != "\n" { lineStart -= 1 }
        guard lineStart > range.lowerBound || lineStarting else { return range.upperBound }
        guard lineStart < range.upperBound,
            src[lineStart..<range.upperBound].allSatisfy({ PythonFormat.isSpace($0) })
        else { return range.upperBound }
        return lineStart
    }

    /// Consumes what follows a closing `%}`/`#}`/`}}` per its marker; returns whether a newline ended it.
    private mutating func consumeAfterTag(sign: Unicode.Scalar?, trimNewline: Bool) -> Bool {
        var last: Unicode.Scalar? = nil
        if sign == "-" {
            while pos < src.count, PythonFormat.isSpace(src[pos]) {
                last = src[pos]
                pos += 1
            }
        } else if sign == nil && trimNewline && pos < src.count && src[pos] == "\n" {
            last = "\n"
            pos += 1
        }
        return last == "\n"
    }

    private mutating func skipComment(openedAt start: Int) throws(TemplateError) -> Bool {
        while pos + 1 < src.count {
            if src[pos] == "#", src[pos + 1] == "}" {
                let sign: Unicode.Scalar? = pos > start + 2 && (src[pos - 1] == "-" || src[pos - 1] == "+") ? src[pos - 1] : nil
                pos += 2
                return consumeAfterTag(sign: sign, trimNewline: true)
            }
            pos += 1
        }
        throw error("Missing end of comment tag", at: start)
    }

    /// If the block tag at `pos` is `raw`, returns the offset after its closing `%}`.
    private mutating func rawBlockStart() -> Int? {
        var i = pos
        while i < src.count, PythonFormat.isSpace(src[i]) { i += 1 }
        guard at(i, "raw") else { return nil }
        i += 3
        if i < src.count, Lexer.isNameContinue(src[i]) { return nil }
        while i < src.count, PythonFormat.isSpace(src[i]) { i += 1 }
        if at(i, "-%}") {
            i += 3
            while i < src.count, PythonFormat.isSpace(src[i]) { i += 1 }
            return i
        }
        if at(i, "%}") { return i + 2 }
        return nil
    }

    private mutating func lexRaw(openedAt start: Int) throws(TemplateError) -> Bool {
        var i = pos
        while i + 1 < src.count {
            if src[i] == "{", src[i + 1] == "%" {
                var j = i + 2
                let sign: Unicode.Scalar? = j < src.count && (src[j] == "-" || src[j] == "+") ? src[j] : nil
                if sign != nil { j += 1 }
                while j < src.count, PythonFormat.isSpace(src[j]) { j += 1 }
                if at(j, "endraw") {
                    j += 6
                    while j < src.count, PythonFormat.isSpace(src[j]) { j += 1 }
                    var endSign: Unicode.Scalar? = nil
                    if j < src.count, src[j] == "-" || src[j] == "+" {
                        endSign = src[j]
                        j += 1
                    }
                    if at(j, "%}") {
                        var dataEnd = i
                        if sign == "-" {
                            while dataEnd > pos, PythonFormat.isSpace(src[dataEnd - 1]) { dataEnd -= 1 }
                        } else if sign != "+" {
                            dataEnd = lstripped(pos..<i, lineStarting: false)
                        }
                        emitData(pos..<dataEnd)
                        pos = j + 2
                        return consumeAfterTag(sign: endSign, trimNewline: true)
                    }
                }
            }
            i += 1
        }
        throw error("Missing end of raw directive", at: start)
    }

    private static let operators = ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                    ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"]

    private mutating func lexTag(block: Bool, openedAt start: Int) throws(TemplateError) -> Bool {
        var balance: [Unicode.Scalar] = []
        while true {
            while pos < src.count, PythonFormat.isSpace(src[pos]) { pos += 1 }
            guard pos < src.count else {
                throw error(block ? "Unexpected end of template inside a block tag opened here"
                    : "Unexpected end of template inside a variable tag opened here", at: start)
            }
            if balance.isEmpty {
                let close = block ? "%}" : "}}"
                for sign in ["-", "+", ""] where at(pos, sign + close) {
                    if sign == "+" && !block { continue }
                    tokens.append(Token(kind: block ? .blockEnd : .variableEnd, position: position(pos)))
                    pos += sign.unicodeScalars.count + 2
                    return consumeAfterTag(sign: sign.unicodeScalars.first, trimNewline: block)
                }
            }
            let tokenStart = pos
            let scalar = src[pos]
            if scalar == "'" || scalar == "\"" {
                tokens.append(Token(kind: .string(try lexString()), position: position(tokenStart)))
            } else if ("0"..."9").contains(scalar) {
                tokens.append(Token(kind: try lexNumber(), position: position(tokenStart)))
            } else if Lexer.isNameStart(scalar) {
                while pos < src.count, Lexer.isNameContinue(src[pos]) { pos += 1 }
                tokens.append(Token(kind: .name(text(tokenStart..<pos)), position: position(tokenStart)))
            } else if let op = Lexer.operators.first(where: { at(pos, $0) }) {
                pos += op.unicodeScalars.count
                switch op {
                case "(", "[", "{": balance.append(op.unicodeScalars.first!)
                case ")", "]", "}":
                    let expected: Unicode.Scalar = op == ")" ? "(" : op == "]" ? "[" : "{"
                    guard balance.last == expected else {
                        throw error("unexpected '\(op)'", at: tokenStart)
                    }
                    balance.removeLast()
                default: break
                }
                tokens.append(Token(kind: .op(op), position: position(tokenStart)))
            } else {
                throw error("unexpected char '\(Character(scalar))'", at: tokenStart)
            }
        }
    }

    /// A string literal, decoded as jinja2 does (Python `unicode-escape`).
    private mutating func lexString() throws(TemplateError) -> String {
        let start = pos
        let quote = src[pos]
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < src.count {
            let scalar = src[pos]
            if scalar == quote {
                pos += 1
                return String(out)
            }
            if scalar == "\\", pos + 1 < src.count {
                let escape = src[pos + 1]
                pos += 2
                switch escape {
                case "\n": break
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "n": out.append("\n")
                case "r": out.append("\r")
                case "t": out.append("\t")
                case "v": out.append("\u{0B}")
                case "0"..."7":
                    var value = escape.value - 48
                    var count = 1
                    while count < 3, pos < src.count, ("0"..."7").contains(src[pos]) {
                        value = value * 8 + src[pos].value - 48
                        pos += 1
                        count += 1
                    }
                    out.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                case "x", "u", "U":
                    let width = escape == "x" ? 2 : escape == "u" ? 4 : 8
                    guard pos + width <= src.count,
                        let value = UInt32(text(pos..<(pos + width)), radix: 16),
                        let decoded = Unicode.Scalar(value)
                    else {
                        throw error("invalid \\\(escape) escape in a string literal", at: pos - 2)
                    }
                    out.append(decoded)
                    pos += width
                default:
                    // Python keeps unknown escapes as written.
                    out.append("\\")
                    out.append(escape)
                }
                continue
            }
            out.append(scalar)
            pos += 1
        }
        throw error("unterminated string literal", at: start)
    }

    private mutating func lexNumber() throws(TemplateError) -> Token.Kind {
        let start = pos
        let afterDot = tokens.last?.kind == .op(".")
        func digits(_ lexer: inout Lexer) {
            while lexer.pos < lexer.src.count,
                ("0"..."9").contains(lexer.src[lexer.pos])
                    || (lexer.src[lexer.pos] == "_" && lexer.pos + 1 < lexer.src.count
                        && ("0"..."9").contains(lexer.src[lexer.pos + 1]))
            {
                lexer.pos += 1
            }
        }
        digits(&self)
        var isFloat = false
        if !afterDot {
            if pos + 1 < src.count, src[pos] == ".", ("0"..."9").contains(src[pos + 1]) {
                pos += 1
                digits(&self)
                isFloat = true
            }
            if pos < src.count, src[pos] == "e" || src[pos] == "E" {
                var j = pos + 1
                if j < src.count, src[j] == "+" || src[j] == "-" { j += 1 }
                if j < src.count, ("0"..."9").contains(src[j]) {
                    pos = j
                    digits(&self)
                    isFloat = true
                }
            }
        }
        let literal = text(start..<pos).replacingOccurrences(of: "_", with: "")
        if isFloat {
            guard let value = Double(literal) else { throw error("invalid number \(literal)", at: start) }
            return .float(value)
        }
        guard let value = Int(literal) else {
            throw error("integer literal \(literal) does not fit in 64 bits", at: start)
        }
        return .integer(value)
    }
}
