import Foundation

extension Interpreter {
    /// Applies jinja2's filter `name` (argument names, defaults and quirks as in jinja2 3.1, with
    /// Hugging Face's `tojson`).
    func applyFilter(_ name: String, _ value: Value, _ arguments: Arguments) throws(TemplateError) -> Value {
        switch name {
        case "default", "d":
            let bound = try arguments.bind(name, [("default_value", .string("")), ("boolean", .bool(false))])
            if value.isUndefined || (bound[1].truthy && !value.truthy) { return bound[0] }
            return value
        case "length", "count":
            _ = try arguments.bind(name, [])
            return .int(try value.length())
        case "string":
            _ = try arguments.bind(name, [])
            return .string(value.str)
        case "safe":
            _ = try arguments.bind(name, [])
            return value
        case "escape", "e":
            _ = try arguments.bind(name, [])
            if value.isUndefined { return .string("") }
            return .string(Interpreter.escapeHTML(value.str))
        case "trim":
            let bound = try arguments.bind(name, [("chars", Value.none)])
            var set: Set<Unicode.Scalar>? = nil
            if case .string(let chars) = bound[0] { set = Set(chars.unicodeScalars) }
            return .string(Methods.strip(Array(value.str.unicodeScalars), set))
        case "upper":
            _ = try arguments.bind(name, [])
            return .string(Methods.upper(value.str))
        case "lower":
            _ = try arguments.bind(name, [])
            return .string(Methods.lower(value.str))
        case "capitalize":
            _ = try arguments.bind(name, [])
            return .string(Methods.capitalize(value.str))
        case "title":
            _ = try arguments.bind(name, [])
            return .string(Interpreter.jinjaTitle(value.str))
        case "replace":
            let bound = try arguments.bind(name, [("old", nil), ("new", nil), ("count", Value.none)])
            return .string(Methods.replace(Array(value.str.unicodeScalars), Array(bound[0].str.unicodeScalars),
                                           Array(bound[1].str.unicodeScalars), count: Operators.integer(bound[2]) ?? -1))
        case "tojson":
            return try toJSON(value, arguments)
        case "join":
            let bound = try arguments.bind(name, [("d", .string("")), ("attribute", Value.none)])
            var parts: [String] = []
            for item in try value.iterate() {
                parts.append(try attributePath(item, bound[1]).str)
            }
            return .string(parts.joined(separator: bound[0].str))
        case "list":
            _ = try arguments.bind(name, [])
            return .list(try value.iterate())
        case "first":
            _ = try arguments.bind(name, [])
            return try value.iterate().first ?? .undefined("No first item, sequence was empty.")
        case "last":
            _ = try arguments.bind(name, [])
            return try value.iterate().last ?? .undefined("No last item, sequence was empty.")
        case "reverse":
            _ = try arguments.bind(name, [])
            if case .string(let s) = value { return .string(Methods.string(s.unicodeScalars.reversed())) }
            return .list(try value.iterate().reversed())
        case "items":
            _ = try arguments.bind(name, [])
            switch value {
            case .undefined: return .list([])
            case .dict(let dict): return .list(dict.fields.map { .tuple([.string($0.key), $0.value]) })
            default: throw TemplateError(.type, "Can only get item pairs from a mapping.")
            }
        case "int":
            let bound = try arguments.bind(name, [("default", .int(0)), ("base", .int(10))])
            return Interpreter.toInt(value, default: bound[0], base: Operators.integer(bound[1]) ?? 10)
        case "float":
            let bound = try arguments.bind(name, [("default", .double(0))])
            return Interpreter.toFloat(value).map { .double($0) } ?? bound[0]
        case "abs":
            _ = try arguments.bind(name, [])
            switch value {
            case .int(let i):
                guard i != Int.min else { throw TemplateError(.type, "integer result does not fit in 64 bits") }
                return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw TemplateError(.type, "bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            let bound = try arguments.bind(name, [("precision", .int(0)), ("method", .string("common"))])
            return try Interpreter.round(value, precision: Operators.integer(bound[0]) ?? 0, method: bound[1].str)
        case "indent":
            let bound = try arguments.bind(name, [("width", .int(4)), ("first", .bool(false)), ("blank", .bool(false))])
            let indentation: String
            if case .string(let text) = bound[0] {
                indentation = text
            } else {
                let width = Operators.integer(bound[0]) ?? 4
                guard width <= 10_000 else { throw TemplateError(.type, "indent width \(width) is too large") }
                indentation = String(repeating: " ", count: max(0, width))
            }
            return .string(Interpreter.indent(value.str, indentation, first: bound[1].truthy, blank: bound[2].truthy))
        case "attr":
            let bound = try arguments.bind(name, [("name", nil)])
            return try attribute(of: value, bound[0].str)
        case "map":
            return try map(value, arguments)
        case "select", "reject":
            return try select(value, arguments, keep: name == "select", byAttribute: false)
        case "selectattr", "rejectattr":
            return try select(value, arguments, keep: name == "selectattr", byAttribute: true)
        case "unique":
            let bound = try arguments.bind(name, [("case_sensitive", .bool(false)), ("attribute", Value.none)])
            var seen: [Value] = []
            var result: [Value] = []
            for item in try value.iterate() {
                let key = Interpreter.sortKey(try attributePath(item, bound[1]), caseSensitive: bound[0].truthy)
                if !seen.contains(where: { $0.equals(key) }) {
                    seen.append(key)
                    result.append(item)
                }
            }
            return .list(result)
        case "sort":
            let bound = try arguments.bind(name, [("reverse", .bool(false)), ("case_sensitive", .bool(false)),
                                                  ("attribute", Value.none)])
            return .list(try sorted(try value.iterate(), reverse: bound[0].truthy, caseSensitive: bound[1].truthy,
                                    attribute: bound[2]))
        case "dictsort":
            let bound = try arguments.bind(name, [("case_sensitive", .bool(false)), ("by", .string("key")),
                                                  ("reverse", .bool(false))])
            guard case .dict(let dict) = value else { throw TemplateError(.type, "dictsort expects a mapping") }
            let pairs = dict.fields.map { Value.tuple([.string($0.key), $0.value]) }
            let position = bound[1].str == "value" ? 1 : 0
            return .list(try sorted(pairs, reverse: bound[2].truthy, caseSensitive: bound[0].truthy,
                                    attribute: .int(position)))
        case "min", "max":
            let bound = try arguments.bind(name, [("case_sensitive", .bool(false)), ("attribute", Value.none)])
            let items = try sorted(try value.iterate(), reverse: false, caseSensitive: bound[0].truthy, attribute: bound[1])
            guard let pick = name == "min" ? items.first : items.last else {
                return .undefined("No \(name == "min" ? "smallest" : "largest") item, sequence was empty.")
            }
            return pick
        case "sum":
            let bound = try arguments.bind(name, [("attribute", Value.none), ("start", .int(0))])
            var total = bound[1]
            for item in try value.iterate() { total = try Operators.binary("+", total, try attributePath(item, bound[0])) }
            return total
        default:
            throw TemplateError(.unsupported, "No filter named '\(name)'.")
        }
    }

    /// Hugging Face's `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
    private func toJSON(_ value: Value, _ arguments: Arguments) throws(TemplateError) -> Value {
        let bound = try arguments.bind("tojson", [("ensure_ascii", .bool(false)), ("indent", Value.none),
                                                  ("separators", Value.none), ("sort_keys", .bool(false))])
        var indent: String? = nil
        switch bound[1] {
        case .none: indent = nil
        case .string(let text): indent = text
        default:
            guard let width = Operators.integer(bound[1]) else {
                throw TemplateError(.type, "indent must be an integer or a string")
            }
            guard width <= 10_000 else { throw TemplateError(.type, "indent width \(width) is too large") }
            indent = String(repeating: " ", count: max(0, width))
        }
        var separators: (String, String)? = nil
        switch bound[2] {
        case .none: break
        case .tuple(let pair) where pair.count == 2, .list(let pair) where pair.count == 2:
            separators = (pair[0].str, pair[1].str)
        default: throw TemplateError(.type, "separators must be a pair of strings")
        }
        let options = JSONWriter.Options(indent: indent, separators: separators, sortKeys: bound[3].truthy,
                                         ensureASCII: bound[0].truthy)
        return .string(try JSONWriter.dumps(value, options: options))
    }

    /// A dotted attribute path (`"function.name"`, or an integer index) as jinja2's `make_attrgetter`
    /// resolves it; `.none` means the item itself.
    func attributePath(_ item: Value, _ path: Value) throws(TemplateError) -> Value {
        switch path {
        case .none: return item
        case .int: return try self.item(of: item, path)
        case .string(let dotted):
            var current = item
            for part in dotted.split(separator: ".", omittingEmptySubsequences: false) {
                if let index = Int(part) {
                    current = try self.item(of: current, .int(index))
                } else {
                    current = try self.item(of: current, .string(String(part)))
                }
            }
            return current
        default:
            throw TemplateError(.type, "attribute must be a string or an integer")
        }
    }

    private func map(_ value: Value, _ arguments: Arguments) throws(TemplateError) -> Value {
        let items = try value.iterate()
        if let path = arguments.keywordValue("attribute") {
            let fallback = arguments.keywordValue("default")
            return .list(try items.map { item throws(TemplateError) in
                let result = try attributePath(item, path)
                if let fallback, result.isUndefined { return fallback }
                return result
            })
        }
        guard case .string(let filterName)? = arguments.positional.first else {
            throw TemplateError(.type, "map requires a filter name or attribute=")
        }
        guard Interpreter.filterNames.contains(filterName) else {
            throw TemplateError(.unsupported, "No filter named '\(filterName)'.")
        }
        let rest = Arguments(positional: Array(arguments.positional.dropFirst()), keyword: arguments.keyword)
        return .list(try items.map { item throws(TemplateError) in try applyFilter(filterName, item, rest) })
    }

    private func select(_ value: Value, _ arguments: Arguments, keep: Bool, byAttribute: Bool) throws(TemplateError) -> Value {
        var positional = arguments.positional
        var path: Value = .none
        if byAttribute {
            guard !positional.isEmpty else { throw TemplateError(.type, "selectattr/rejectattr need an attribute") }
            path = positional.removeFirst()
        }
        var testName: String? = nil
        if !positional.isEmpty {
            testName = positional.removeFirst().str
            guard Interpreter.testNames.contains(testName!) else {
                throw TemplateError(.unsupported, "No test named '\(testName!)'.")
            }
        }
        var result: [Value] = []
        for item in try value.iterate() {
            let subject = try attributePath(item, path)
            let passed = try testName.map { name throws(TemplateError) in try applyTest(name, subject, positional) }
                ?? subject.truthy
            if passed == keep { result.append(item) }
        }
        return .list(result)
    }

    private static func sortKey(_ value: Value, caseSensitive: Bool) -> Value {
        if !caseSensitive, case .string(let s) = value { return .string(Methods.lower(s)) }
        return value
    }

    private func sorted(_ items: [Value], reverse: Bool, caseSensitive: Bool, attribute: Value) throws(TemplateError) -> [Value] {
        var keyed: [(key: Value, item: Value)] = []
        for item in items {
            keyed.append((Interpreter.sortKey(try attributePath(item, attribute), caseSensitive: caseSensitive), item))
        }
        // Insertion sort keeps Python's stability and lets comparison errors propagate.
        var result: [(key: Value, item: Value)] = []
        for entry in keyed {
            var position = result.count
            while position > 0 {
                let before = result[position - 1].key
                let outOfOrder = reverse ? try before.less(entry.key, op: "<") : try entry.key.less(before, op: "<")
                if !outOfOrder { break }
                position -= 1
            }
            result.insert(entry, at: position)
        }
        return result.map(\.item)
    }

    static func escapeHTML(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// jinja2's `title` filter: words start after `-`, whitespace, `(`, `{`, `[` or `<`.
    static func jinjaTitle(_ text: String) -> String {
        var out: [Unicode.Scalar] = []
        var atWordStart = true
        for scalar in text.unicodeScalars {
            let separator = PythonFormat.isSpace(scalar) || ["-", "(", "{", "[", "<"].contains(scalar)
            if separator {
                out.append(scalar)
                atWordStart = true
            } else if atWordStart {
                out.append(contentsOf: scalar.properties.uppercaseMapping.unicodeScalars)
                atWordStart = false
            } else {
                out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return Methods.string(out)
    }

    /// jinja2's `indent` filter.
    static func indent(_ text: String, _ indentation: String, first: Bool, blank: Bool) -> String {
        let lines = Methods.splitLines(Array((text + "\n").unicodeScalars))
        var result: String
        if blank {
            result = lines.joined(separator: "\n" + indentation)
        } else {
            result = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
            }
        }
        if first { result = indentation + result }
        return result
    }

    /// Python `float(value)` for the values templates convert; nil where Python raises.
    static func toFloat(_ value: Value) -> Double? {
        switch value {
        case .int(let i): return Double(i)
        case .bool(let b): return b ? 1 : 0
        case .double(let d): return d
        case .string(let s):
            let trimmed = Methods.strip(Array(s.unicodeScalars), nil).replacingOccurrences(of: "_", with: "")
            switch trimmed.lowercased() {
            case "inf", "+inf", "infinity", "+infinity": return .infinity
            case "-inf", "-infinity": return -.infinity
            case "nan", "+nan", "-nan": return .nan
            default: break
            }
            guard !trimmed.isEmpty, trimmed.unicodeScalars.allSatisfy({ "0123456789.eE+-".unicodeScalars.contains($0) })
            else { return nil }
            return Double(trimmed)
        default: return nil
        }
    }

    /// jinja2's `int` filter: `int(value, base)` for strings, else `int(value)`, else `int(float(value))`,
    /// else the default.
    static func toInt(_ value: Value, default fallback: Value, base: Int) -> Value {
        switch value {
        case .int(let i): return .int(i)
        case .bool(let b): return .int(b ? 1 : 0)
        case .double(let d):
            guard d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) else { return fallback }
            return .int(i)
        case .string(let s):
            let trimmed = Methods.strip(Array(s.unicodeScalars), nil).replacingOccurrences(of: "_", with: "")
            if (2...36).contains(base), let i = Int(trimmed, radix: base) { return .int(i) }
            if let d = toFloat(value), d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
            return fallback
        default:
            return fallback
        }
    }

    /// jinja2's `round` filter: Python `round` (correctly rounded, ties to even) or ceil/floor.
    static func round(_ value: Value, precision: Int, method: String) throws(TemplateError) -> Value {
        guard let number = value.number else {
            throw TemplateError(.type, "type \(value.typeName) doesn't define __round__ method")
        }
        switch method {
        case "common":
            if precision == 0 { return .double(number.rounded(.toNearestOrEven)) }
            guard precision > 0, precision < 300 else { return .double(number) }
            return .double(Double(String(format: "%.\(precision)f", number)) ?? number)
        case "ceil", "floor":
            let scale = pow(10.0, Double(precision))
            let scaled = number * scale
            return .double((method == "ceil" ? scaled.rounded(.up) : scaled.rounded(.down)) / scale)
        default:
            throw TemplateError(.type, "method must be common, ceil or floor")
        }
    }
}
