/// Positional and keyword arguments of a call.
struct Arguments {
    var positional: [Value] = []
    var keyword: [(String, Value)] = []

    func keywordValue(_ name: String) -> Value? { keyword.first { $0.0 == name }?.1 }

    /// Binds arguments to a Python-style signature: each parameter comes from its position or keyword,
    /// else its default. Unknown keywords and surplus positionals are errors, as in Python.
    func bind(_ function: String, _ parameters: [(String, Value?)]) throws(TemplateError) -> [Value] {
        if positional.count > parameters.count {
            throw TemplateError(.type, "\(function)() takes at most \(parameters.count) arguments (\(positional.count) given)")
        }
        for (name, _) in keyword where !parameters.contains(where: { $0.0 == name }) {
            throw TemplateError(.type, "\(function)() got an unexpected keyword argument '\(name)'")
        }
        var bound: [Value] = []
        for (index, (name, fallback)) in parameters.enumerated() {
            if index < positional.count {
                bound.append(positional[index])
            } else if let value = keywordValue(name) {
                bound.append(value)
            } else if let fallback {
                bound.append(fallback)
            } else {
                throw TemplateError(.type, "\(function)() missing required argument '\(name)'")
            }
        }
        return bound
    }
}

/// A function value: a global (`range`, `namespace`...), a bound method, or a template macro.
final class Callable {
    let name: String
    let isMacro: Bool
    let body: (Arguments) throws(TemplateError) -> Value

    init(_ name: String, isMacro: Bool = false, _ body: @escaping (Arguments) throws(TemplateError) -> Value) {
        self.name = name
        self.isMacro = isMacro
        self.body = body
    }
}
