/// A value handed to a template from Swift: the JSON data model, with objects that keep their key order
/// (a template's `tojson` output and `for key, value in ...` iteration follow it, as in Python).
public indirect enum TemplateValue: Sendable, Equatable, CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    case object(TemplateObject)

    /// Parses JSON text, keeping the key order of objects. Integers without a fraction or exponent become
    /// `.int` (when they fit), other numbers `.double`, as Python's `json.loads` does.
    public init(jsonText: String) throws(TemplateError) {
        var parser = JSONTextParser(text: jsonText)
        self = try parser.parseDocument()
    }

    /// The value as compact-ish JSON (Python `json.dumps` defaults, no ASCII escaping).
    public var description: String { JSONWriter.dumps(self) }
}

/// A JSON object whose keys keep their insertion order. Setting an existing key keeps its position.
public struct TemplateObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: TemplateValue] = [:]

    public init() {}

    public init(_ fields: [(String, TemplateValue)]) {
        for (key, value) in fields { self[key] = value }
    }

    public subscript(key: String) -> TemplateValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }

    /// Fields in insertion order.
    public var fields: [(key: String, value: TemplateValue)] { keys.map { ($0, storage[$0]!) } }

    /// Order-insensitive, like Python dict equality.
    public static func == (lhs: TemplateObject, rhs: TemplateObject) -> Bool { lhs.storage == rhs.storage }
}

extension TemplateValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: TemplateValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, TemplateValue)...) { self = .object(TemplateObject(elements)) }
    public init(nilLiteral: ()) { self = .none }
}
