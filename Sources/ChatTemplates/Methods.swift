/// The Python methods of `str` and `dict` that templates call (`.strip()`, `.items()`, ...), and the
/// string helpers filters share with them. Strings are handled as Unicode scalars, like Python's.
enum Methods {
    typealias Scalars = [Unicode.Scalar]

    static func string(_ scalars: some Sequence<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    private static func method(_ name: String, _ body: @escaping (Arguments) throws(TemplateError) -> Value) -> Value {
        .callable(Callable(name, body))
    }

    private static func text(_ value: Value, _ function: String) throws(TemplateError) -> String {
        guard case .string(let s) = value else {
            throw TemplateError(.type, "\(function)() argument must be str, not \(value.typeName)")
        }
        return s
    }

    /// The optional `chars` argument of strip methods: nil means whitespace.
    private static func stripSet(_ arguments: Arguments, _ function: String) throws(TemplateError) -> Set<Unicode.Scalar>? {
        let bound = try arguments.bind(function, [("chars", Value.none)])
        if case .none = bound[0] { return nil }
        return Set(try text(bound[0], function).unicodeScalars)
    }

    static func dictMethod(_ dict: Dict, _ name: String) -> Value? {
        switch name {
        case "items":
            return method(name) { _ in .list(dict.fields.map { .tuple([.string($0.key), $0.value]) }) }
        case "keys":
            return method(name) { _ in .list(dict.keys.map { .string($0) }) }
        case "values":
            return method(name) { _ in .list(dict.fields.map(\.value)) }
        case "get":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind("get", [("key", nil), ("default", Value.none)])
                guard case .string(let key) = bound[0] else { return bound[1] }
                return dict[key] ?? bound[1]
            }
        case "pop", "popitem", "update", "setdefault", "clear":
            return .undefined("access to attribute '\(name)' of 'dict' object is unsafe.")
        default:
            return nil
        }
    }

    static func stringMethod(_ s: String, _ name: String) -> Value? {
        let scalars = Array(s.unicodeScalars)
        switch name {
        case "strip", "lstrip", "rstrip":
            return method(name) { arguments throws(TemplateError) in
                let set = try stripSet(arguments, name)
                return .string(strip(scalars, set, leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "upper": return method(name) { _ in .string(upper(s)) }
        case "lower": return method(name) { _ in .string(lower(s)) }
        case "title": return method(name) { _ in .string(title(s)) }
        case "capitalize": return method(name) { _ in .string(capitalize(s)) }
        case "split", "rsplit":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("sep", Value.none), ("maxsplit", Value.int(-1))])
                guard let limit = Operators.integer(bound[1]) else {
                    throw TemplateError(.type, "'\(bound[1].typeName)' object cannot be interpreted as an integer")
                }
                let separator: String?
                if case .none = bound[0] { separator = nil } else { separator = try text(bound[0], name) }
                if separator == "" { throw TemplateError(.type, "empty separator") }
                let parts = split(scalars, separator: separator.map { Array($0.unicodeScalars) }, limit: limit,
                                  fromRight: name == "rsplit")
                return .list(parts.map { .string($0) })
            }
        case "splitlines":
            return method(name) { _ in .list(splitLines(scalars).map { .string($0) }) }
        case "startswith", "endswith":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("prefix", nil)])
                var candidates: [String] = []
                switch bound[0] {
                case .string(let single): candidates = [single]
                case .tuple(let items):
                    for item in items { candidates.append(try text(item, name)) }
                default:
                    throw TemplateError(.type, "\(name) first arg must be str or a tuple of str, not \(bound[0].typeName)")
                }
                return .bool(candidates.contains { candidate in
                    let needle = Array(candidate.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: needle)
                        : scalars.count >= needle.count && Array(scalars.suffix(needle.count)) == needle
                })
            }
        case "replace":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("old", nil), ("new", nil), ("count", Value.int(-1))])
                return .string(replace(scalars, Array(try text(bound[0], name).unicodeScalars),
                                       Array(try text(bound[1], name).unicodeScalars),
                                       count: Operators.integer(bound[2]) ?? -1))
            }
        case "find", "count", "index":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("sub", nil)])
                let needle = Array(try text(bound[0], name).unicodeScalars)
                if name == "count" { return .int(count(needle, in: scalars)) }
                if let position = find(needle, in: scalars) { return .int(position) }
                if name == "index" { throw TemplateError(.type, "substring not found") }
                return .int(-1)
            }
        case "join":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("iterable", nil)])
                var parts: [String] = []
                for item in try bound[0].iterate() { parts.append(try text(item, "join")) }
                return .string(parts.joined(separator: s))
            }
        case "removeprefix", "removesuffix":
            return method(name) { arguments throws(TemplateError) in
                let bound = try arguments.bind(name, [("affix", nil)])
                let affix = Array(try text(bound[0], name).unicodeScalars)
                if name == "removeprefix", scalars.starts(with: affix) { return .string(string(scalars.dropFirst(affix.count))) }
                if name == "removesuffix", !affix.isEmpty, scalars.count >= affix.count,
                    Array(scalars.suffix(affix.count)) == affix
                {
                    return .string(string(scalars.dropLast(affix.count)))
                }
                return .string(s)
            }
        case "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper":
            return method(name) { _ in
                switch name {
                case "isdigit": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.numericType != nil })
                case "isalpha": return .bool(!scalars.isEmpty && scalars.allSatisfy { $0.properties.isAlphabetic })
                case "isalnum":
                    return .bool(!scalars.isEmpty && scalars.allSatisfy {
                        $0.properties.isAlphabetic || $0.properties.numericType != nil
                    })
                case "isspace": return .bool(!scalars.isEmpty && scalars.allSatisfy(PythonFormat.isSpace))
                case "islower": return .bool(isLower(scalars))
                default: return .bool(isUpper(scalars))
                }
            }
        default:
            return nil
        }
    }

    // MARK: Python string algorithms

    static func strip(_ scalars: Scalars, _ set: Set<Unicode.Scalar>?, leading: Bool = true, trailing: Bool = true) -> String {
        func stripped(_ scalar: Unicode.Scalar) -> Bool { set?.contains(scalar) ?? PythonFormat.isSpace(scalar) }
        var start = 0
        var end = scalars.count
        if leading { while start < end, stripped(scalars[start]) { start += 1 } }
        if trailing { while end > start, stripped(scalars[end - 1]) { end -= 1 } }
        return string(scalars[start..<end])
    }

    static func upper(_ s: String) -> String {
        string(s.unicodeScalars.flatMap { $0.properties.uppercaseMapping.unicodeScalars })
    }

    static func lower(_ s: String) -> String {
        string(s.unicodeScalars.flatMap { $0.properties.lowercaseMapping.unicodeScalars })
    }

    private static func isCased(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isCased }

    /// Python `str.title()`: a cased character after an uncased one starts a word.
    static func title(_ s: String) -> String {
        var out: [Unicode.Scalar] = []
        var previousCased = false
        for scalar in s.unicodeScalars {
            if previousCased {
                out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(contentsOf: scalar.properties.titlecaseMapping.unicodeScalars)
            }
            previousCased = isCased(scalar)
        }
        return string(out)
    }

    /// Python `str.capitalize()`: the first character in title case, the rest lower case.
    static func capitalize(_ s: String) -> String {
        var out: [Unicode.Scalar] = []
        for (index, scalar) in s.unicodeScalars.enumerated() {
            out.append(contentsOf: index == 0 ? scalar.properties.titlecaseMapping.unicodeScalars
                : scalar.properties.lowercaseMapping.unicodeScalars)
        }
        return string(out)
    }

    static func isLower(_ scalars: Scalars) -> Bool {
        var sawCased = false
        for scalar in scalars where isCased(scalar) {
            if scalar.properties.isUppercase || scalar.properties.generalCategory == .titlecaseLetter { return false }
            sawCased = true
        }
        return sawCased
    }

    static func isUpper(_ scalars: Scalars) -> Bool {
        var sawCased = false
        for scalar in scalars where isCased(scalar) {
            if scalar.properties.isLowercase || scalar.properties.generalCategory == .titlecaseLetter { return false }
            sawCased = true
        }
        return sawCased
    }

    static func find(_ needle: Scalars, in haystack: Scalars) -> Int? {
        if needle.isEmpty { return 0 }
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }

    static func count(_ needle: Scalars, in haystack: Scalars) -> Int {
        if needle.isEmpty { return haystack.count + 1 }
        var total = 0
        var start = 0
        while start + needle.count <= haystack.count {
            if Array(haystack[start..<(start + needle.count)]) == needle {
                total += 1
                start += needle.count
            } else {
                start += 1
            }
        }
        return total
    }

    static func replace(_ scalars: Scalars, _ old: Scalars, _ new: Scalars, count limit: Int) -> String {
        var out: [Unicode.Scalar] = []
        var replaced = 0
        if old.isEmpty {
            for (index, scalar) in scalars.enumerated() {
                if limit < 0 || replaced < limit { out.append(contentsOf: new); replaced += 1 }
                out.append(scalar)
                _ = index
            }
            if limit < 0 || replaced < limit { out.append(contentsOf: new) }
            return string(out)
        }
        var i = 0
        while i < scalars.count {
            if (limit < 0 || replaced < limit), i + old.count <= scalars.count,
                Array(scalars[i..<(i + old.count)]) == old
            {
                out.append(contentsOf: new)
                i += old.count
                replaced += 1
            } else {
                out.append(scalars[i])
                i += 1
            }
        }
        return string(out)
    }

    /// Python `str.split(sep, maxsplit)` and `rsplit`.
    static func split(_ scalars: Scalars, separator: Scalars?, limit: Int, fromRight: Bool) -> [String] {
        if fromRight {
            let reversedParts = split(scalars.reversed(), separator: separator.map { $0.reversed() }, limit: limit,
                                      fromRight: false)
            return reversedParts.reversed().map { string($0.unicodeScalars.reversed()) }
        }
        var parts: [String] = []
        if let separator {
            var current: [Unicode.Scalar] = []
            var i = 0
            while i < scalars.count {
                if (limit < 0 || parts.count < limit), i + separator.count <= scalars.count,
                    Array(scalars[i..<(i + separator.count)]) == separator
                {
                    parts.append(string(current))
                    current = []
                    i += separator.count
                } else {
                    current.append(scalars[i])
                    i += 1
                }
            }
            parts.append(string(current))
            return parts
        }
        var i = 0
        while i < scalars.count {
            while i < scalars.count, PythonFormat.isSpace(scalars[i]) { i += 1 }
            if i == scalars.count { break }
            if limit >= 0 && parts.count == limit {
                var end = scalars.count
                while end > i, PythonFormat.isSpace(scalars[end - 1]) { end -= 1 }
                parts.append(string(scalars[i..<end]))
                break
            }
            let start = i
            while i < scalars.count, !PythonFormat.isSpace(scalars[i]) { i += 1 }
            parts.append(string(scalars[start..<i]))
        }
        return parts
    }

    /// Python `str.splitlines()` (line boundaries dropped).
    static func splitLines(_ scalars: Scalars) -> [String] {
        let boundaries: Set<UInt32> = [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029]
        var lines: [String] = []
        var start = 0
        var i = 0
        while i < scalars.count {
            if boundaries.contains(scalars[i].value) {
                lines.append(string(scalars[start..<i]))
                if scalars[i] == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
                i += 1
                start = i
            } else {
                i += 1
            }
        }
        if start < scalars.count { lines.append(string(scalars[start..<scalars.count])) }
        return lines
    }
}
