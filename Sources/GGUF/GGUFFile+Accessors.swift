/// Typed access to metadata. Errors name the file and the key, and for a wrong type the expected and the
/// found type, e.g. `model.gguf: metadata key "general.name" has type string, expected integer`.
extension GGUFFile {
    /// True if the metadata has `key`.
    public func contains(_ key: String) -> Bool { metadata[key] != nil }

    /// A string value.
    public func string(_ key: String) throws(GGUFError) -> String {
        let value = try lookUp(key, expected: "string")
        guard case .string(let string) = value else { throw mismatch(key, expected: "string", found: value) }
        return string
    }

    /// An integer of any GGUF integer type, as `Int` (a uint64 beyond `Int.max` is an `.invalidValue`).
    public func integer(_ key: String) throws(GGUFError) -> Int {
        let value = try lookUp(key, expected: "integer")
        return try integer(value, key: key, expected: "integer")
    }

    /// A float32 or float64, or an integer converted to `Float`.
    public func float(_ key: String) throws(GGUFError) -> Float {
        let value = try lookUp(key, expected: "float")
        guard let float = value.floatValue else { throw mismatch(key, expected: "float", found: value) }
        return float
    }

    /// A bool value.
    public func bool(_ key: String) throws(GGUFError) -> Bool {
        let value = try lookUp(key, expected: "bool")
        guard case .bool(let bool) = value else { throw mismatch(key, expected: "bool", found: value) }
        return bool
    }

    /// An array of strings.
    public func stringArray(_ key: String) throws(GGUFError) -> [String] {
        let expected = "array of string"
        let value = try lookUp(key, expected: expected)
        guard case .array(let elements) = value else { throw mismatch(key, expected: expected, found: value) }
        var strings: [String] = []
        strings.reserveCapacity(elements.count)
        for element in elements {
            guard case .string(let string) = element else { throw mismatch(key, expected: expected, found: value) }
            strings.append(string)
        }
        return strings
    }

    /// An array of integers of any GGUF integer type.
    public func integerArray(_ key: String) throws(GGUFError) -> [Int] {
        let expected = "array of integer"
        let value = try lookUp(key, expected: expected)
        guard case .array(let elements) = value else { throw mismatch(key, expected: expected, found: value) }
        var integers: [Int] = []
        integers.reserveCapacity(elements.count)
        for element in elements {
            guard element.isInteger else { throw mismatch(key, expected: expected, found: value) }
            integers.append(try integer(element, key: key, expected: expected))
        }
        return integers
    }

    /// An array of floats (float32, float64 or integers, converted to `Float`).
    public func floatArray(_ key: String) throws(GGUFError) -> [Float] {
        let expected = "array of float"
        let value = try lookUp(key, expected: expected)
        guard case .array(let elements) = value else { throw mismatch(key, expected: expected, found: value) }
        var floats: [Float] = []
        floats.reserveCapacity(elements.count)
        for element in elements {
            guard let float = element.floatValue else { throw mismatch(key, expected: expected, found: value) }
            floats.append(float)
        }
        return floats
    }

    /// Like ``string(_:)``, but nil when the key is absent; still throws on a wrong type.
    public func optionalString(_ key: String) throws(GGUFError) -> String? {
        contains(key) ? try string(key) : nil
    }

    /// Like ``integer(_:)``, but nil when the key is absent; still throws on a wrong type.
    public func optionalInteger(_ key: String) throws(GGUFError) -> Int? {
        contains(key) ? try integer(key) : nil
    }

    /// Like ``float(_:)``, but nil when the key is absent; still throws on a wrong type.
    public func optionalFloat(_ key: String) throws(GGUFError) -> Float? {
        contains(key) ? try float(key) : nil
    }

    /// Like ``bool(_:)``, but nil when the key is absent; still throws on a wrong type.
    public func optionalBool(_ key: String) throws(GGUFError) -> Bool? {
        contains(key) ? try bool(key) : nil
    }

    private func lookUp(_ key: String, expected: String) throws(GGUFError) -> GGUFValue {
        guard let value = metadata[key] else {
            throw GGUFError(.missingKey, "\(name): missing metadata key \"\(key)\" (expected \(expected))")
        }
        return value
    }

    private func integer(_ value: GGUFValue, key: String, expected: String) throws(GGUFError) -> Int {
        guard value.isInteger else { throw mismatch(key, expected: expected, found: value) }
        guard let integer = value.integerValue else {
            throw GGUFError(.invalidValue, "\(name): metadata key \"\(key)\" holds \(value), which exceeds Int.max")
        }
        return integer
    }

    private func mismatch(_ key: String, expected: String, found: GGUFValue) -> GGUFError {
        GGUFError(.typeMismatch, "\(name): metadata key \"\(key)\" has type \(found.typeName), expected \(expected)")
    }
}
