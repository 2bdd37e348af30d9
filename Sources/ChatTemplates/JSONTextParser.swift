/// A small strict JSON parser over Unicode scalars that keeps object key order.
struct JSONTextParser {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var depth = 0

    init(text: String) { scalars = Array(text.unicodeScalars) }

    mutating func parseDocument() throws(TemplateError) -> TemplateValue {
        let value = try parseValue()
        skipWhitespace()
        if index != scalars.count { throw failure("unexpected text after the JSON value") }
        return value
    }

    private func failure(_ what: String) -> TemplateError {
        TemplateError(.invalidArgument, "invalid JSON at offset \(index): \(what)")
    }

    private mutating func skipWhitespace() {
        while index < scalars.count, [" ", "\t", "\n", "\r"].contains(scalars[index]) { index += 1 }
    }

    private mutating func parseValue() throws(TemplateError) -> TemplateValue {
        skipWhitespace()
        guard index < scalars.count else { throw failure("unexpected end of text") }
        switch scalars[index] {
        case "{": return try parseObject()
        case "[": return try parseArray()
        case "\"": return .string(try parseString())
        case "t": try expectWord("true"); return .bool(true)
        case "f": try expectWord("false"); return .bool(false)
        case "n": try expectWord("null"); return .none
        default: return try parseNumber()
        }
    }

    private mutating func expectWord(_ word: String) throws(TemplateError) {
        for scalar in word.unicodeScalars {
            guard index < scalars.count, scalars[index] == scalar else { throw failure("expected \(word)") }
            index += 1
        }
    }

    private mutating func enter() throws(TemplateError) {
        depth += 1
        if depth > 512 { throw failure("nesting deeper than 512 levels") }
    }

    private mutating func parseObject() throws(TemplateError) -> TemplateValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var object = TemplateObject()
        skipWhitespace()
        if index < scalars.count, scalars[index] == "}" { index += 1; return .object(object) }
        while true {
            skipWhitespace()
            guard index < scalars.count, scalars[index] == "\"" else { throw failure("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard index < scalars.count, scalars[index] == ":" else { throw failure("expected ':'") }
            index += 1
            object[key] = try parseValue()
            skipWhitespace()
            guard index < scalars.count else { throw failure("unexpected end of text in an object") }
            if scalars[index] == "," { index += 1; continue }
            if scalars[index] == "}" { index += 1; return .object(object) }
            throw failure("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws(TemplateError) -> TemplateValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var items: [TemplateValue] = []
        skipWhitespace()
        if index < scalars.count, scalars[index] == "]" { index += 1; return .array(items) }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            guard index < scalars.count else { throw failure("unexpected end of text in an array") }
            if scalars[index] == "," { index += 1; continue }
            if scalars[index] == "]" { index += 1; return .array(items) }
            throw failure("expected ',' or ']'")
        }
    }

    private mutating func parseHex4() throws(TemplateError) -> UInt32 {
        guard index + 4 <= scalars.count else { throw failure("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard scalars[index].isASCII, let digit = Int(String(scalars[index]), radix: 16) else {
                throw failure("bad \\u escape")
            }
            value = value * 16 + UInt32(digit)
            index += 1
        }
        return value
    }

    private mutating func parseString() throws(TemplateError) -> String {
        index += 1
        var result = String.UnicodeScalarView()
        while true {
            guard index < scalars.count else { throw failure("unterminated string") }
            let scalar = scalars[index]
            index += 1
            switch scalar {
            case "\"":
                return String(result)
            case "\\":
                guard index < scalars.count else { throw failure("unterminated escape") }
                let escape = scalars[index]
                index += 1
                switch escape {
                case "\"": result.append("\"")
                case "\\": result.append("\\")
                case "/": result.append("/")
                case "b": result.append("\u{08}")
                case "f": result.append("\u{0C}")
                case "n": result.append("\n")
                case "r": result.append("\r")
                case "t": result.append("\t")
                case "u":
                    var code = try parseHex4()
                    if (0xD800..<0xDC00).contains(code), index + 1 < scalars.count, scalars[index] == "\\",
                        scalars[index + 1] == "u"
                    {
                        let save = index
                        index += 2
                        let low = try parseHex4()
                        if (0xDC00..<0xE000).contains(low) {
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = save
                        }
                    }
                    // Lone surrogates cannot live in a Swift string; U+FFFD stands in for them.
                    result.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default:
                    throw failure("bad escape \\\(escape)")
                }
            default:
                if scalar.value < 0x20 { throw failure("control character in a string") }
                result.append(scalar)
            }
        }
    }

    private mutating func parseNumber() throws(TemplateError) -> TemplateValue {
        let start = index
        var isInteger = true
        if index < scalars.count, scalars[index] == "-" { index += 1 }
        func digits(_ parser: inout JSONTextParser) -> Int {
            var count = 0
            while parser.index < parser.scalars.count, ("0"..."9").contains(parser.scalars[parser.index]) {
                parser.index += 1
                count += 1
            }
            return count
        }
        if digits(&self) == 0 { throw failure("expected a value") }
        if index < scalars.count, scalars[index] == "." {
            index += 1
            isInteger = false
            if digits(&self) == 0 { throw failure("expected digits after '.'") }
        }
        if index < scalars.count, scalars[index] == "e" || scalars[index] == "E" {
            index += 1
            isInteger = false
            if index < scalars.count, scalars[index] == "+" || scalars[index] == "-" { index += 1 }
            if digits(&self) == 0 { throw failure("expected exponent digits") }
        }
        let text = String(String.UnicodeScalarView(scalars[start..<index]))
        if isInteger, let value = Int(text) { return .int(value) }
        guard let value = Double(text) else { throw failure("bad number \(text)") }
        return .double(value)
    }
}
