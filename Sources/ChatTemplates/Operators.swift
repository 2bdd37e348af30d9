import Foundation

/// Python's operators on template values, with Python's error messages.
enum Operators {
    /// The value as a Python integer index (bool counts, as in Python).
    static func integer(_ value: Value) -> Int? {
        switch value {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    private static func failIfUndefined(_ values: Value...) throws(TemplateError) {
        for value in values {
            if case .undefined(let message) = value { throw TemplateError(.undefined, message) }
        }
    }

    private static func unsupported(_ op: String, _ left: Value, _ right: Value) -> TemplateError {
        TemplateError(.type, "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
    }

    private static func overflow() -> TemplateError {
        TemplateError(.type, "integer result does not fit in 64 bits")
    }

    static func unary(_ op: String, _ operand: Value) throws(TemplateError) -> Value {
        try failIfUndefined(operand)
        switch operand {
        case .int, .bool:
            let value = integer(operand)!
            if op == "+" { return .int(value) }
            guard value != Int.min else { throw overflow() }
            return .int(-value)
        case .double(let d): return .double(op == "-" ? -d : d)
        default: throw TemplateError(.type, "bad operand type for unary \(op): '\(operand.typeName)'")
        }
    }

    static func binary(_ op: String, _ left: Value, _ right: Value) throws(TemplateError) -> Value {
        try failIfUndefined(left, right)
        switch op {
        case "+": return try add(left, right)
        case "-":
            if let a = integer(left), let b = integer(right) {
                let (result, overflowed) = a.subtractingReportingOverflow(b)
                if overflowed { throw overflow() }
                return .int(result)
            }
            if let a = left.number, let b = right.number { return .double(a - b) }
            throw unsupported("-", left, right)
        case "*": return try multiply(left, right)
        case "/":
            guard let a = left.number, let b = right.number else { throw unsupported("/", left, right) }
            guard b != 0 else {
                throw TemplateError(.type, isFloat(left) || isFloat(right) ? "float division by zero" : "division by zero")
            }
            return .double(a / b)
        case "//":
            if let a = integer(left), let b = integer(right) {
                guard b != 0 else { throw TemplateError(.type, "integer division or modulo by zero") }
                if a == Int.min && b == -1 { throw overflow() }
                return .int(floorDivide(a, b))
            }
            guard let a = left.number, let b = right.number else { throw unsupported("//", left, right) }
            guard b != 0 else { throw TemplateError(.type, "float floor division by zero") }
            return .double(((a - floatModulo(a, b)) / b).rounded())
        case "%":
            if case .string = left {
                throw TemplateError(.unsupported, "printf-style string formatting with '%' is not supported")
            }
            if let a = integer(left), let b = integer(right) {
                guard b != 0 else { throw TemplateError(.type, "integer modulo by zero") }
                if b == -1 { return .int(0) }
                return .int(a - floorDivide(a, b) * b)
            }
            guard let a = left.number, let b = right.number else { throw unsupported("%", left, right) }
            guard b != 0 else { throw TemplateError(.type, "float modulo") }
            return .double(floatModulo(a, b))
        case "**":
            if let base = integer(left), let exponent = integer(right) {
                if exponent < 0 { return .double(pow(Double(base), Double(exponent))) }
                // Exponentiation by squaring: O(log n) steps, overflow reported instead of trapping.
                var result = 1
                var factor = base
                var remaining = exponent
                while remaining > 0 {
                    if remaining & 1 == 1 {
                        let (product, overflowed) = result.multipliedReportingOverflow(by: factor)
                        if overflowed { throw overflow() }
                        result = product
                    }
                    remaining >>= 1
                    if remaining > 0 {
                        let (square, overflowed) = factor.multipliedReportingOverflow(by: factor)
                        if overflowed { throw overflow() }
                        factor = square
                    }
                }
                return .int(result)
            }
            guard let a = left.number, let b = right.number else { throw unsupported("** or pow()", left, right) }
            if a == 0 && b < 0 { throw TemplateError(.type, "0.0 cannot be raised to a negative power") }
            return .double(pow(a, b))
        default:
            throw TemplateError(.unsupported, "operator '\(op)' is not supported")
        }
    }

    private static func isFloat(_ value: Value) -> Bool {
        if case .double = value { return true }
        return false
    }

    private static func floorDivide(_ a: Int, _ b: Int) -> Int {
        let quotient = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient
    }

    private static func floatModulo(_ a: Double, _ b: Double) -> Double {
        var remainder = fmod(a, b)
        if remainder != 0 {
            if (b < 0) != (remainder < 0) { remainder += b }
        } else {
            remainder = b < 0 ? -0.0 : 0.0
        }
        return remainder
    }

    private static func add(_ left: Value, _ right: Value) throws(TemplateError) -> Value {
        switch (left, right) {
        case (.string(let a), .string(let b)): return .string(a + b)
        case (.list(let a), .list(let b)): return .list(a + b)
        case (.tuple(let a), .tuple(let b)): return .tuple(a + b)
        case (.string, _): throw TemplateError(.type, "can only concatenate str (not \"\(right.typeName)\") to str")
        case (.list, _): throw TemplateError(.type, "can only concatenate list (not \"\(right.typeName)\") to list")
        case (.tuple, _): throw TemplateError(.type, "can only concatenate tuple (not \"\(right.typeName)\") to tuple")
        default:
            if let a = integer(left), let b = integer(right) {
                let (sum, overflowed) = a.addingReportingOverflow(b)
                if overflowed { throw overflow() }
                return .int(sum)
            }
            if let a = left.number, let b = right.number { return .double(a + b) }
            throw unsupported("+", left, right)
        }
    }

    /// The most items (or characters) a repetition may produce; beyond it rendering fails, not the process.
    static let maximumRepetition = 10_000_000

    private static func multiply(_ left: Value, _ right: Value) throws(TemplateError) -> Value {
        func repeated(_ count: Int, _ unit: Int) throws(TemplateError) -> Int {
            if unit == 0 { return 0 }
            let total = max(0, count)
            if total > maximumRepetition / unit {
                throw TemplateError(.type, "repetition result too large (more than \(maximumRepetition) items)")
            }
            return total
        }
        switch (left, right) {
        case (.string(let s), _) where integer(right) != nil:
            return .string(String(repeating: s, count: try repeated(integer(right)!, s.unicodeScalars.count)))
        case (_, .string(let s)) where integer(left) != nil:
            return .string(String(repeating: s, count: try repeated(integer(left)!, s.unicodeScalars.count)))
        case (.list(let items), _) where integer(right) != nil:
            return .list(Array([[Value]](repeating: items, count: try repeated(integer(right)!, items.count)).joined()))
        case (_, .list(let items)) where integer(left) != nil:
            return .list(Array([[Value]](repeating: items, count: try repeated(integer(left)!, items.count)).joined()))
        default:
            if let a = integer(left), let b = integer(right) {
                let (product, overflowed) = a.multipliedReportingOverflow(by: b)
                if overflowed { throw overflow() }
                return .int(product)
            }
            if let a = left.number, let b = right.number { return .double(a * b) }
            if case .string = left { throw TemplateError(.type, "can't multiply sequence by non-int of type '\(right.typeName)'") }
            throw unsupported("*", left, right)
        }
    }

    static func compare(_ op: String, _ left: Value, _ right: Value) throws(TemplateError) -> Bool {
        switch op {
        case "==": return left.equals(right)
        case "!=": return !left.equals(right)
        case "in": return try contains(right, left)
        case "not in": return !(try contains(right, left))
        default:
            try failIfUndefined(left, right)
            switch op {
            case "<": return try left.less(right, op: "<")
            case ">": return try right.less(left, op: ">")
            case "<=": return try left.less(right, op: "<=") || left.equals(right)
            case ">=": return try right.less(left, op: ">=") || left.equals(right)
            default: throw TemplateError(.unsupported, "comparison '\(op)' is not supported")
            }
        }
    }

    /// Python `item in container`.
    static func contains(_ container: Value, _ item: Value) throws(TemplateError) -> Bool {
        switch container {
        case .undefined:
            // jinja2's Undefined iterates as empty, so nothing is in it.
            return false
        case .string(let text):
            guard case .string(let needle) = item else {
                throw TemplateError(.type, "'in <string>' requires string as left operand, not \(item.typeName)")
            }
            if needle.isEmpty { return true }
            return Methods.find(Array(needle.unicodeScalars), in: Array(text.unicodeScalars)) != nil
        case .list(let items), .tuple(let items):
            return items.contains { $0.equals(item) }
        case .dict(let dict):
            guard case .string(let key) = item else { return false }
            return dict[key] != nil
        case .namespace(let namespace):
            guard case .string(let key) = item else { return false }
            return namespace.values[key] != nil
        default:
            throw TemplateError(.type, "argument of type '\(container.typeName)' is not iterable")
        }
    }
}
