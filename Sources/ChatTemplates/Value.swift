import Foundation

/// A run-time value inside the interpreter: the Python objects a jinja2 template can meet.
enum Value {
    /// jinja2's `Undefined`, carrying the message an error about it would print.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case tuple([Value])
    case dict(Dict)
    case namespace(Namespace)
    case callable(Callable)
    case loop(LoopContext)

    init(_ value: TemplateValue) {
        switch value {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let items): self = .list(items.map(Value.init))
        case .object(let object):
            var dict = Dict()
            for (key, item) in object.fields { dict[key] = Value(item) }
            self = .dict(dict)
        }
    }

    static func undefinedName(_ name: String) -> Value { .undefined("'\(name)' is undefined") }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let items), .tuple(let items): return !items.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .callable, .loop: return true
        }
    }

    /// Python's type name, as TypeError messages print it.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .callable(let c): return c.isMacro ? "Macro" : "builtin_function_or_method"
        case .loop: return "LoopContext"
        }
    }

    /// jinja2's `object_type_repr`, used in undefined-attribute messages.
    var objectTypeRepr: String {
        switch self {
        case .none: return "None"
        case .loop: return "jinja2.runtime.LoopContext object"
        case .namespace: return "jinja2.utils.Namespace object"
        default: return "\(typeName) object"
        }
    }

    /// Python `str(value)`; undefined prints as the empty string, as in jinja2.
    var str: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr(value)`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return PythonFormat.float(d)
        case .string(let s): return PythonFormat.stringRepr(s)
        case .list(let items): return "[" + items.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let items):
            if items.count == 1 { return "(" + items[0].repr + ",)" }
            return "(" + items.map(\.repr).joined(separator: ", ") + ")"
        case .dict(let d):
            return "{" + d.fields.map { PythonFormat.stringRepr($0.key) + ": " + $0.value.repr }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace {" + ns.values.fields.map { PythonFormat.stringRepr($0.key) + ": " + $0.value.repr }
                .joined(separator: ", ") + "}>"
        case .callable(let c): return c.isMacro ? "<Macro '\(c.name)'>" : "<built-in method \(c.name)>"
        case .loop(let loop): return "<LoopContext \(loop.index0 + 1)/\(loop.length)>"
        }
    }

    /// The items a `for` loop visits: list and tuple items, dict keys, string characters.
    func iterate() throws(TemplateError) -> [Value] {
        switch self {
        case .undefined: return []
        case .list(let items), .tuple(let items): return items
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .namespace(let ns): return ns.values.keys.map { .string($0) }
        default: throw TemplateError(.type, "'\(typeName)' object is not iterable")
        }
    }

    var isIterable: Bool {
        switch self {
        case .list, .tuple, .dict, .string, .namespace: return true
        default: return false
        }
    }

    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Python `==`: numbers compare by value across int, float and bool; strings by code points.
    func equals(_ other: Value) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined): return true
        case (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.dict(let a), .dict(let b)):
            guard a.count == b.count else { return false }
            return a.fields.allSatisfy { field in b[field.key].map { field.value.equals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.callable(let a), .callable(let b)): return a === b
        case (.loop(let a), .loop(let b)): return a === b
        default:
            if let x = number, let y = other.number { return x == y && exactIntegerEquality(other) }
            return false
        }
    }

    /// Large integers lose precision as doubles; compare them exactly when both are integers.
    private func exactIntegerEquality(_ other: Value) -> Bool {
        if case .int(let a) = self, case .int(let b) = other { return a == b }
        return true
    }

    /// Python `<` for the types templates compare: numbers, strings, and sequences of those.
    func less(_ other: Value, op: String) throws(TemplateError) -> Bool {
        switch (self, other) {
        case (.int(let a), .int(let b)): return a < b
        case (.string(let a), .string(let b)): return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            for (x, y) in zip(a, b) where !x.equals(y) { return try x.less(y, op: op) }
            return a.count < b.count
        default:
            if let x = number, let y = other.number { return x < y }
            throw TemplateError(.type, "'\(op)' not supported between instances of '\(typeName)' and '\(other.typeName)'")
        }
    }

    /// Python `len(value)`.
    func length() throws(TemplateError) -> Int {
        switch self {
        case .undefined: return 0
        case .string(let s): return s.unicodeScalars.count
        case .list(let items), .tuple(let items): return items.count
        case .dict(let d): return d.count
        default: throw TemplateError(.type, "object of type '\(typeName)' has no len()")
        }
    }

    /// Converts back to the public JSON model, or nil for values JSON cannot hold.
    var templateValue: TemplateValue? {
        switch self {
        case .none: return TemplateValue.none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let items), .tuple(let items):
            var out: [TemplateValue] = []
            for item in items {
                guard let converted = item.templateValue else { return nil }
                out.append(converted)
            }
            return .array(out)
        case .dict(let d):
            var object = TemplateObject()
            for (key, item) in d.fields {
                guard let converted = item.templateValue else { return nil }
                object[key] = converted
            }
            return .object(object)
        default: return nil
        }
    }
}

/// An insertion-ordered dictionary with string keys (Python dict semantics for the keys templates use).
struct Dict {
    private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    var count: Int { keys.count }
    var fields: [(key: String, value: Value)] { keys.map { ($0, storage[$0]!) } }
}

/// The object `namespace(...)` returns: the one mutable value templates can share across scopes.
final class Namespace {
    var values = Dict()
}
