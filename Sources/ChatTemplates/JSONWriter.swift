/// Python's `json.dumps`, as Hugging Face's `tojson` filter calls it (`ensure_ascii=False` by default).
enum JSONWriter {
    struct Options {
        /// nil: one line. Otherwise the text repeated per nesting level (Python: `indent=4` is four spaces).
        var indent: String?
        var itemSeparator: String
        var keySeparator: String
        var sortKeys = false
        var ensureASCII = false

        init(indent: String?, separators: (String, String)? = nil, sortKeys: Bool = false, ensureASCII: Bool = false) {
            self.indent = indent
            self.itemSeparator = separators?.0 ?? (indent == nil ? ", " : ",")
            self.keySeparator = separators?.1 ?? ": "
            self.sortKeys = sortKeys
            self.ensureASCII = ensureASCII
        }
    }

    /// A public value always converts: it holds only JSON types.
    static func dumps(_ value: TemplateValue) -> String {
        (try? dumps(Value(value), options: Options(indent: nil))) ?? ""
    }

    static func dumps(_ value: Value, options: Options) throws(TemplateError) -> String {
        var out = ""
        try write(value, options: options, level: 0, into: &out)
        return out
    }

    private static func write(_ value: Value, options: Options, level: Int, into out: inout String) throws(TemplateError) {
        switch value {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else {
                out += PythonFormat.float(d)
            }
        case .string(let s): writeString(s, ensureASCII: options.ensureASCII, into: &out)
        case .list(let items), .tuple(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += options.itemSeparator }
                newline(options, level: level + 1, into: &out)
                try write(item, options: options, level: level + 1, into: &out)
            }
            newline(options, level: level, into: &out)
            out += "]"
        case .dict(let d):
            if d.count == 0 { out += "{}"; return }
            var fields = d.fields
            if options.sortKeys {
                fields.sort { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
            }
            out += "{"
            for (index, field) in fields.enumerated() {
                if index > 0 { out += options.itemSeparator }
                newline(options, level: level + 1, into: &out)
                writeString(field.key, ensureASCII: options.ensureASCII, into: &out)
                out += options.keySeparator
                try write(field.value, options: options, level: level + 1, into: &out)
            }
            newline(options, level: level, into: &out)
            out += "}"
        default:
            let name = value.isUndefined ? "Undefined" : value.typeName
            throw TemplateError(.type, "Object of type \(name) is not JSON serializable")
        }
    }

    private static func newline(_ options: Options, level: Int, into out: inout String) {
        guard let indent = options.indent else { return }
        out += "\n" + String(repeating: indent, count: level)
    }

    static func writeString(_ s: String, ensureASCII: Bool, into out: inout String) {
        var scalars = String.UnicodeScalarView()
        scalars.append("\"")
        func escape(_ text: String) { scalars.append(contentsOf: text.unicodeScalars) }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": escape("\\\"")
            case "\\": escape("\\\\")
            case "\n": escape("\\n")
            case "\r": escape("\\r")
            case "\t": escape("\\t")
            case "\u{08}": escape("\\b")
            case "\u{0C}": escape("\\f")
            default:
                if scalar.value < 0x20 {
                    escape("\\u" + PythonFormat.hex(scalar.value, width: 4))
                } else if ensureASCII && scalar.value > 0x7F {
                    if scalar.value >= 0x10000 {
                        let v = scalar.value - 0x10000
                        escape("\\u" + PythonFormat.hex(0xD800 + (v >> 10), width: 4))
                        escape("\\u" + PythonFormat.hex(0xDC00 + (v & 0x3FF), width: 4))
                    } else {
                        escape("\\u" + PythonFormat.hex(scalar.value, width: 4))
                    }
                } else {
                    scalars.append(scalar)
                }
            }
        }
        scalars.append("\"")
        out += String(scalars)
    }
}
