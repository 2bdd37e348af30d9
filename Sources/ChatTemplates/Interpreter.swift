/// Executes a parsed template with jinja2's semantics: Python values and operators, jinja2's scoping
/// (`set` inside a `for` body stays in that iteration; `if` has no scope; `namespace` objects are shared),
/// undefined values that print as nothing but fail when used in arithmetic or attribute access.
///
/// One interpreter renders one template once; it is not shared between threads.
final class Interpreter {
    /// Names usable after `|` (checked when parsing, as jinja2 does).
    static let filterNames: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
        "title", "tojson", "trim", "unique", "upper",
    ]

    /// Names usable after `is`.
    static let testNames: Set<String> = [
        "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false",
        "true", "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable",
        "callable", "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan",
        "ge", ">=", "<", "lt", "lessthan", "<=", "le",
    ]

    /// How a statement list ended: normally, or by `{% break %}` / `{% continue %}`.
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    private var scopes: [[String: Value]]
    private var output = ""
    private var loopDepth = 0
    private var macroDepth = 0

    init(context: [String: Value]) {
        var root = Interpreter.globals()
        for (key, value) in context { root[key] = value }
        scopes = [root]
    }

    func render(_ nodes: [Node]) throws(TemplateError) -> String {
        _ = try execute(nodes)
        return output
    }

    // MARK: Statements

    private func execute(_ nodes: [Node]) throws(TemplateError) -> Flow {
        for node in nodes {
            let flow = try execute(node)
            if case .normal = flow { continue }
            return flow
        }
        return .normal
    }

    private func execute(_ node: Node) throws(TemplateError) -> Flow {
        switch node {
        case .text(let text):
            output += text
        case .output(let expression, let position):
            do {
                output += try evaluate(expression).str
            } catch {
                throw error.located(position)
            }
        case .ifChain(let branches, let otherwise):
            for (condition, body) in branches {
                if try evaluate(condition).truthy { return try execute(body) }
            }
            return try execute(otherwise)
        case .forLoop(let target, let iterable, let filter, let body, let otherwise, let position):
            return try executeFor(target, iterable, filter, body, otherwise, position)
        case .set(let target, let expression, let position):
            do {
                try assign(target, try evaluate(expression))
            } catch {
                throw error.located(position)
            }
        case .setBlock(let name, let body):
            let saved = output
            output = ""
            _ = try execute(body)
            let captured = output
            output = saved
            scopes[scopes.count - 1][name] = .string(captured)
        case .macro(let name, let parameters, let body):
            scopes[scopes.count - 1][name] = .callable(makeMacro(name, parameters, body))
        case .breakLoop(let position):
            guard loopDepth > 0 else { throw TemplateError(.syntax, "break outside of a loop").located(position) }
            return .breakLoop
        case .continueLoop(let position):
            guard loopDepth > 0 else { throw TemplateError(.syntax, "continue outside of a loop").located(position) }
            return .continueLoop
        case .generation(let body):
            return try execute(body)
        }
        return .normal
    }

    private func executeFor(_ target: Target, _ iterable: Expr, _ filter: Expr?, _ body: [Node], _ otherwise: [Node],
                            _ position: SourcePosition) throws(TemplateError) -> Flow {
        var items: [Value]
        do {
            items = try evaluate(iterable).iterate()
            if let filter {
                var kept: [Value] = []
                for item in items {
                    scopes.append([:])
                    defer { scopes.removeLast() }
                    try assign(target, item)
                    if try evaluate(filter).truthy { kept.append(item) }
                }
                items = kept
            }
        } catch {
            throw error.located(position)
        }
        if items.isEmpty { return try execute(otherwise) }
        // `loop.depth` counts recursive-loop levels only (unsupported here), so it is 1 even in nested loops.
        let loop = LoopContext(items: items, depth0: 0)
        loopDepth += 1
        defer { loopDepth -= 1 }
        for (index, item) in items.enumerated() {
            loop.index0 = index
            scopes.append(["loop": .loop(loop)])
            defer { scopes.removeLast() }
            do {
                try assign(target, item)
            } catch {
                throw error.located(position)
            }
            if case .breakLoop = try execute(body) { break }
        }
        return .normal
    }

    private func assign(_ target: Target, _ value: Value) throws(TemplateError) {
        switch target {
        case .name(let name):
            scopes[scopes.count - 1][name] = value
        case .tuple(let names):
            let items = try value.iterate()
            guard items.count == names.count else {
                if items.count > names.count {
                    throw TemplateError(.type, "too many values to unpack (expected \(names.count))")
                }
                throw TemplateError(.type, "not enough values to unpack (expected \(names.count), got \(items.count))")
            }
            for (name, item) in zip(names, items) { scopes[scopes.count - 1][name] = item }
        case .attribute(let object, let attribute):
            guard case .namespace(let namespace) = lookup(object) else {
                throw TemplateError(.type, "Cannot assign attribute on non-namespace object")
            }
            namespace.values[attribute] = value
        }
    }

    private func lookup(_ name: String) -> Value {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return .undefinedName(name)
    }

    private func makeMacro(_ name: String, _ parameters: [(String, Expr?)], _ body: [Node]) -> Callable {
        Callable(name, isMacro: true) { [unowned self] arguments throws(TemplateError) in
            if arguments.positional.count > parameters.count {
                throw TemplateError(.type, "macro '\(name)' takes not more than \(parameters.count) argument(s)")
            }
            for (keyword, _) in arguments.keyword where !parameters.contains(where: { $0.0 == keyword }) {
                throw TemplateError(.type, "macro '\(name)' takes no keyword argument '\(keyword)'")
            }
            guard self.macroDepth < 64 else { throw TemplateError(.type, "macro '\(name)' recursed too deeply") }
            let savedScopes = self.scopes
            let savedOutput = self.output
            let savedLoopDepth = self.loopDepth
            defer {
                self.scopes = savedScopes
                self.output = savedOutput
                self.loopDepth = savedLoopDepth
                self.macroDepth -= 1
            }
            self.macroDepth += 1
            self.scopes = [savedScopes[0], [:]]
            self.loopDepth = 0
            for (index, (parameter, fallback)) in parameters.enumerated() {
                let value: Value
                if index < arguments.positional.count {
                    value = arguments.positional[index]
                } else if let given = arguments.keywordValue(parameter) {
                    value = given
                } else if let fallback {
                    value = try self.evaluate(fallback)
                } else {
                    value = .undefined("parameter '\(parameter)' was not provided")
                }
                self.scopes[1][parameter] = value
            }
            self.output = ""
            _ = try self.execute(body)
            return .string(self.output)
        }
    }

    // MARK: Expressions

    func evaluate(_ expression: Expr) throws(TemplateError) -> Value {
        switch expression {
        case .literal(let literal):
            switch literal {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .name(let name, _):
            return lookup(name)
        case .list(let items):
            var values: [Value] = []
            for item in items { values.append(try evaluate(item)) }
            return .list(values)
        case .tuple(let items):
            var values: [Value] = []
            for item in items { values.append(try evaluate(item)) }
            return .tuple(values)
        case .dict(let pairs, let position):
            var dict = Dict()
            for (keyExpression, valueExpression) in pairs {
                guard case .string(let key) = try evaluate(keyExpression) else {
                    throw TemplateError(.unsupported, "dictionary keys other than strings are not supported").located(position)
                }
                dict[key] = try evaluate(valueExpression)
            }
            return .dict(dict)
        case .attribute(let object, let name, let position):
            do {
                return try attribute(of: try evaluate(object), name)
            } catch {
                throw error.located(position)
            }
        case .item(let object, let key, let position):
            do {
                return try item(of: try evaluate(object), try evaluate(key))
            } catch {
                throw error.located(position)
            }
        case .slice(let object, let start, let stop, let step, let position):
            do {
                return try slice(try evaluate(object), start.map(evaluate), stop.map(evaluate), step.map(evaluate))
            } catch {
                throw error.located(position)
            }
        case .call(let callee, let positional, let keyword, let position):
            do {
                let function = try evaluate(callee)
                let arguments = try evaluateArguments(positional, keyword)
                return try call(function, arguments)
            } catch {
                throw error.located(position)
            }
        case .filter(let value, let name, let positional, let keyword, let position):
            do {
                let input = try evaluate(value)
                return try applyFilter(name, input, try evaluateArguments(positional, keyword))
            } catch {
                throw error.located(position)
            }
        case .test(let value, let name, let arguments, let negated, let position):
            do {
                let input = try evaluate(value)
                var values: [Value] = []
                for argument in arguments { values.append(try evaluate(argument)) }
                let result = try applyTest(name, input, values)
                return .bool(negated ? !result : result)
            } catch {
                throw error.located(position)
            }
        case .unary(let op, let operand, let position):
            do {
                return try Operators.unary(op, try evaluate(operand))
            } catch {
                throw error.located(position)
            }
        case .binary(let op, let left, let right, let position):
            do {
                return try Operators.binary(op, try evaluate(left), try evaluate(right))
            } catch {
                throw error.located(position)
            }
        case .and(let left, let right):
            let first = try evaluate(left)
            return first.truthy ? try evaluate(right) : first
        case .or(let left, let right):
            let first = try evaluate(left)
            return first.truthy ? first : try evaluate(right)
        case .not(let operand):
            return .bool(!(try evaluate(operand).truthy))
        case .compare(let first, let operations, let position):
            do {
                var left = try evaluate(first)
                for (op, rightExpression) in operations {
                    let right = try evaluate(rightExpression)
                    if !(try Operators.compare(op, left, right)) { return .bool(false) }
                    left = right
                }
                return .bool(true)
            } catch {
                throw error.located(position)
            }
        case .concat(let parts, let position):
            var text = ""
            do {
                for part in parts { text += try evaluate(part).str }
            } catch {
                throw error.located(position)
            }
            return .string(text)
        case .conditional(let condition, let then, let otherwise):
            if try evaluate(condition).truthy { return try evaluate(then) }
            if let otherwise { return try evaluate(otherwise) }
            return .undefined("the inline if-expression evaluated to false and no else section was defined.")
        }
    }

    private func evaluateArguments(_ positional: [Expr], _ keyword: [(String, Expr)]) throws(TemplateError) -> Arguments {
        var arguments = Arguments()
        for expression in positional { arguments.positional.append(try evaluate(expression)) }
        for (name, expression) in keyword { arguments.keyword.append((name, try evaluate(expression))) }
        return arguments
    }

    func call(_ function: Value, _ arguments: Arguments) throws(TemplateError) -> Value {
        switch function {
        case .callable(let callable): return try callable.body(arguments)
        case .undefined(let message): throw TemplateError(.undefined, message)
        default: throw TemplateError(.type, "'\(function.typeName)' object is not callable")
        }
    }

    /// jinja2's `getattr`: a Python attribute (methods) first, then the item of that name.
    func attribute(of object: Value, _ name: String) throws(TemplateError) -> Value {
        switch object {
        case .undefined(let message):
            throw TemplateError(.undefined, message)
        case .dict(let dict):
            if let method = Methods.dictMethod(dict, name) { return method }
            return dict[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .string(let string):
            return Methods.stringMethod(string, name) ?? .undefined("'str object' has no attribute '\(name)'")
        case .list, .tuple:
            if ["append", "pop", "extend", "insert", "remove", "reverse", "sort", "clear"].contains(name) {
                return .undefined("access to attribute '\(name)' of '\(object.typeName)' object is unsafe.")
            }
            return .undefined("'\(object.objectTypeRepr)' has no attribute '\(name)'")
        case .namespace(let namespace):
            return namespace.values[name] ?? .undefined("'\(object.objectTypeRepr)' has no attribute '\(name)'")
        case .loop(let loop):
            return loop.attribute(name) ?? .undefined("'\(object.objectTypeRepr)' has no attribute '\(name)'")
        default:
            return .undefined("'\(object.objectTypeRepr)' has no attribute '\(name)'")
        }
    }

    /// jinja2's `getitem`: the item first, then (for string keys) the attribute of that name.
    func item(of object: Value, _ key: Value) throws(TemplateError) -> Value {
        switch (object, key) {
        case (.undefined(let message), _):
            throw TemplateError(.undefined, message)
        case (.dict(let dict), .string(let name)):
            if let value = dict[name] { return value }
            return try attribute(of: object, name)
        case (.list(let items), _), (.tuple(let items), _):
            if case .string(let name) = key { return try attribute(of: object, name) }
            guard let position = Operators.integer(key) else {
                throw TemplateError(.type, "\(object.typeName) indices must be integers or slices, not \(key.typeName)")
            }
            let resolved = position < 0 ? position + items.count : position
            guard resolved >= 0, resolved < items.count else {
                return .undefined("\(object.objectTypeRepr) has no element \(key.repr)")
            }
            return items[resolved]
        case (.string(let string), _):
            if case .string(let name) = key { return try attribute(of: object, name) }
            guard let position = Operators.integer(key) else {
                throw TemplateError(.type, "string indices must be integers, not '\(key.typeName)'")
            }
            let scalars = Array(string.unicodeScalars)
            let resolved = position < 0 ? position + scalars.count : position
            guard resolved >= 0, resolved < scalars.count else {
                return .undefined("str object has no element \(key.repr)")
            }
            return .string(String(scalars[resolved]))
        case (_, .string(let name)):
            return try attribute(of: object, name)
        default:
            return .undefined("\(object.objectTypeRepr) has no element \(key.repr)")
        }
    }

    private func slice(_ object: Value, _ start: Value?, _ stop: Value?, _ step: Value?) throws(TemplateError) -> Value {
        func bound(_ value: Value?) throws(TemplateError) -> Int? {
            guard let value else { return nil }
            if case .none = value { return nil }
            guard let integer = Operators.integer(value) else {
                throw TemplateError(.type, "slice indices must be integers or None")
            }
            return integer
        }
        let stepValue = try bound(step) ?? 1
        guard stepValue != 0 else { throw TemplateError(.type, "slice step cannot be zero") }
        let startValue = try bound(start)
        let stopValue = try bound(stop)
        func indices(_ count: Int) -> [Int] {
            func adjust(_ value: Int?, _ fallback: Int) -> Int {
                guard var v = value else { return fallback }
                if v < 0 {
                    v += count
                    if v < 0 { v = stepValue < 0 ? -1 : 0 }
                } else if v >= count {
                    v = stepValue < 0 ? count - 1 : count
                }
                return v
            }
            let from = adjust(startValue, stepValue < 0 ? count - 1 : 0)
            let to = adjust(stopValue, stepValue < 0 ? -1 : count)
            var result: [Int] = []
            var i = from
            while stepValue > 0 ? i < to : i > to {
                result.append(i)
                i += stepValue
            }
            return result
        }
        switch object {
        case .undefined(let message):
            throw TemplateError(.undefined, message)
        case .list(let items):
            return .list(indices(items.count).map { items[$0] })
        case .tuple(let items):
            return .tuple(indices(items.count).map { items[$0] })
        case .string(let string):
            let scalars = Array(string.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        default:
            throw TemplateError(.type, "'\(object.typeName)' object is not subscriptable")
        }
    }
}
