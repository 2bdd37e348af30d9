extension Interpreter {
    /// Evaluates jinja2's test `name` (`x is name(arguments)`).
    func applyTest(_ name: String, _ value: Value, _ arguments: [Value]) throws(TemplateError) -> Bool {
        func argument(_ index: Int = 0) throws(TemplateError) -> Value {
            guard index < arguments.count else { throw TemplateError(.type, "test '\(name)' needs an argument") }
            return arguments[index]
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none":
            if case .none = value { return true }
            return false
        case "boolean":
            if case .bool = value { return true }
            return false
        case "true":
            if case .bool(true) = value { return true }
            return false
        case "false":
            if case .bool(false) = value { return true }
            return false
        case "integer":
            if case .int = value { return true }
            return false
        case "float":
            if case .double = value { return true }
            return false
        case "number": return value.number != nil
        case "string":
            if case .string = value { return true }
            return false
        case "mapping":
            if case .dict = value { return true }
            return false
        case "sequence":
            switch value {
            case .list, .tuple, .string, .dict: return true
            default: return false
            }
        case "iterable":
            return value.isIterable || value.isUndefined
        case "callable":
            if case .callable = value { return true }
            return false
        case "lower": return Methods.isLower(Array(value.str.unicodeScalars))
        case "upper": return Methods.isUpper(Array(value.str.unicodeScalars))
        case "escaped": return false
        case "odd", "even":
            guard let number = Operators.integer(value) else {
                throw TemplateError(.type, "unsupported operand type(s) for %: '\(value.typeName)' and 'int'")
            }
            return (number % 2 != 0) == (name == "odd")
        case "divisibleby":
            let divisor = try argument()
            return try Operators.binary("%", value, divisor).equals(.int(0))
        case "filter": return Interpreter.filterNames.contains(value.str)
        case "test": return Interpreter.testNames.contains(value.str)
        case "sameas":
            let other = try argument()
            switch (value, other) {
            case (.namespace(let a), .namespace(let b)): return a === b
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.int(let a), .int(let b)): return a == b
            default: return false
            }
        case "in": return try Operators.contains(try argument(), value)
        case "==", "eq", "equalto": return try Operators.compare("==", value, try argument())
        case "!=", "ne": return try Operators.compare("!=", value, try argument())
        case ">", "gt", "greaterthan": return try Operators.compare(">", value, try argument())
        case ">=", "ge": return try Operators.compare(">=", value, try argument())
        case "<", "lt", "lessthan": return try Operators.compare("<", value, try argument())
        case "<=", "le": return try Operators.compare("<=", value, try argument())
        default: throw TemplateError(.unsupported, "No test named '\(name)'.")
        }
    }
}
