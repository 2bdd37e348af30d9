/// Builds the statement tree from tokens with jinja2's grammar and operator precedence (loosest first):
/// conditional `a if c else b`, `or`, `and`, `not`, comparisons and `in`, `+ -`, `~`, `* / // %`, `**`,
/// unary `- +`, then postfix `.attr`, `[index]`, calls, `|filter` and `is test`.
struct Parser {
    private let tokens: [Token]
    private var index = 0
    /// Nesting of expressions and blocks; bounded so hostile input cannot exhaust the stack.
    private var depth = 0
    private static let maximumDepth = 200

    init(tokens: [Token]) { self.tokens = tokens }

    /// Tags jinja2 knows that this interpreter does not implement (reported as unsupported, not unknown).
    private static let unsupportedTags: Set<String> = [
        "call", "filter", "include", "import", "from", "extends", "block", "with", "autoescape", "trans",
    ]

    private var current: Token { tokens[index] }
    private var next: Token { tokens[min(index + 1, tokens.count - 1)] }

    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isOp(_ op: String) -> Bool { current.kind == .op(op) }
    private func isName(_ name: String) -> Bool { current.kind == .name(name) }

    private func failure(_ message: String, _ token: Token? = nil, code: TemplateError.Code = .syntax) -> TemplateError {
        let position = (token ?? current).position
        return TemplateError(code, message, line: position.line, column: position.column)
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .data: return "template data"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "end of print statement"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "end of statement block"
        case .name(let n): return "'\(n)'"
        case .string: return "string"
        case .integer, .float: return "number"
        case .op(let op): return "'\(op)'"
        case .eof: return "end of template"
        }
    }

    private mutating func expectOp(_ op: String) throws(TemplateError) {
        guard isOp(op) else { throw failure("expected '\(op)', got \(describe(current))") }
        _ = advance()
    }

    private mutating func expectBlockEnd() throws(TemplateError) {
        guard current.kind == .blockEnd else { throw failure("expected end of statement block, got \(describe(current))") }
        _ = advance()
    }

    private mutating func expectName() throws(TemplateError) -> String {
        guard case .name(let name) = current.kind else { throw failure("expected a name, got \(describe(current))") }
        _ = advance()
        return name
    }

    // MARK: Statements

    mutating func parseTemplate() throws(TemplateError) -> [Node] {
        let (nodes, _) = try parseBody(until: [], opener: nil)
        return nodes
    }

    /// Parses nodes until one of `ends` opens a block tag; returns the nodes and that tag's name, with the
    /// tag's name consumed (its arguments and `%}` are the caller's).
    private mutating func parseBody(until ends: [String], opener: (String, Token)?) throws(TemplateError) -> ([Node], String) {
        var nodes: [Node] = []
        while true {
            let token = current
            switch token.kind {
            case .data(let text):
                _ = advance()
                nodes.append(.text(text))
            case .variableBegin:
                _ = advance()
                let expression = try parseTuple()
                guard current.kind == .variableEnd else {
                    throw failure("expected end of print statement, got \(describe(current))")
                }
                _ = advance()
                nodes.append(.output(expression, token.position))
            case .blockBegin:
                _ = advance()
                let nameToken = current
                let name = try expectName()
                if ends.contains(name) { return (nodes, name) }
                if let opener, name.hasPrefix("end") || name == "elif" || name == "else" {
                    let wanted = ends.map { "'\($0)'" }.joined(separator: " or ")
                    throw failure("Encountered unknown tag '\(name)'. Jinja was looking for the following tags: "
                        + "\(wanted). The innermost block that needs to be closed is '\(opener.0)'.", nameToken)
                }
                nodes.append(try parseStatement(name, nameToken))
            case .eof:
                guard let opener else { return (nodes, "") }
                let wanted = ends.map { "'\($0)'" }.joined(separator: " or ")
                throw failure("Unexpected end of template. Jinja was looking for the following tags: \(wanted). "
                    + "The innermost block that needs to be closed is '\(opener.0)'.", opener.1)
            default:
                throw failure("unexpected \(describe(token))")
            }
        }
    }

    private mutating func nest(_ token: Token) throws(TemplateError) {
        depth += 1
        if depth > Parser.maximumDepth {
            throw failure("template nests deeper than \(Parser.maximumDepth) levels", token, code: .unsupported)
        }
    }

    /// Operator and postfix chains build left-nested trees; a bound keeps evaluation's recursion shallow.
    private func chain(_ count: inout Int) throws(TemplateError) {
        count += 1
        if count > Parser.maximumDepth {
            throw failure("expression chains more than \(Parser.maximumDepth) operations", code: .unsupported)
        }
    }

    private mutating func parseStatement(_ name: String, _ token: Token) throws(TemplateError) -> Node {
        try nest(token)
        defer { depth -= 1 }
        switch name {
        case "if": return try parseIf(token)
        case "for": return try parseFor(token)
        case "set": return try parseSet(token)
        case "macro": return try parseMacro(token)
        case "break":
            try expectBlockEnd()
            return .breakLoop(token.position)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(token.position)
        case "generation":
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"], opener: ("generation", token))
            try expectBlockEnd()
            return .generation(body)
        default:
            if Parser.unsupportedTags.contains(name) {
                throw failure("the '\(name)' tag is not supported", token, code: .unsupported)
            }
            throw failure("Encountered unknown tag '\(name)'.", token)
        }
    }

    private mutating func parseIf(_ token: Token) throws(TemplateError) -> Node {
        var branches: [(Expr, [Node])] = []
        var condition = try parseTuple(withCondexpr: false)
        try expectBlockEnd()
        while true {
            let (body, end) = try parseBody(until: ["elif", "else", "endif"], opener: ("if", token))
            branches.append((condition, body))
            switch end {
            case "elif":
                condition = try parseTuple(withCondexpr: false)
                try expectBlockEnd()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"], opener: ("if", token))
                try expectBlockEnd()
                return .ifChain(branches, otherwise: otherwise)
            default:
                try expectBlockEnd()
                return .ifChain(branches, otherwise: [])
            }
        }
    }

    private mutating func parseFor(_ token: Token) throws(TemplateError) -> Node {
        let target = try parseNameTarget()
        guard isName("in") else { throw failure("expected 'in', got \(describe(current))") }
        _ = advance()
        let iterable = try parseTuple(withCondexpr: false, extraEnds: ["recursive"])
        var filter: Expr? = nil
        if isName("if") {
            _ = advance()
            filter = try parseExpression()
        }
        if isName("recursive") { throw failure("recursive for loops are not supported", code: .unsupported) }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["endfor", "else"], opener: ("for", token))
        var otherwise: [Node] = []
        try expectBlockEnd()
        if end == "else" {
            (otherwise, _) = try parseBody(until: ["endfor"], opener: ("for", token))
            try expectBlockEnd()
        }
        return .forLoop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise, token.position)
    }

    private mutating func parseNameTarget() throws(TemplateError) -> Target {
        var names = [try expectName()]
        var isTuple = false
        while isOp(",") {
            _ = advance()
            isTuple = true
            if case .name = current.kind { names.append(try expectName()) } else { break }
        }
        return isTuple ? .tuple(names) : .name(names[0])
    }

    private mutating func parseSet(_ token: Token) throws(TemplateError) -> Node {
        let target: Target
        if case .name(let object) = current.kind, next.kind == .op(".") {
            _ = advance()
            _ = advance()
            target = .attribute(object: object, attribute: try expectName())
        } else {
            target = try parseNameTarget()
        }
        if isOp("=") {
            _ = advance()
            let value = try parseTuple()
            try expectBlockEnd()
            return .set(target, value, token.position)
        }
        guard case .name(let name) = target else { throw failure("expected '='") }
        if isOp("|") { throw failure("filtered block assignments are not supported", code: .unsupported) }
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endset"], opener: ("set", token))
        try expectBlockEnd()
        return .setBlock(name, body)
    }

    private mutating func parseMacro(_ token: Token) throws(TemplateError) -> Node {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(String, Expr?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let parameter = try expectName()
            var fallback: Expr? = nil
            if isOp("=") {
                _ = advance()
                fallback = try parseExpression()
            }
            parameters.append((parameter, fallback))
        }
        _ = advance()
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endmacro"], opener: ("macro", token))
        if case .name = current.kind { _ = advance() }
        try expectBlockEnd()
        return .macro(name: name, parameters: parameters, body: body)
    }

    // MARK: Expressions

    private func isTupleEnd(_ extraEnds: [String]) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(")"): return true
        case .name(let name): return extraEnds.contains(name)
        default: return false
        }
    }

    private mutating func parseTuple(withCondexpr: Bool = true, explicitParentheses: Bool = false,
                                     extraEnds: [String] = []) throws(TemplateError) -> Expr {
        var items: [Expr] = []
        var isTuple = false
        let start = current
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnds) { break }
            items.append(withCondexpr ? try parseExpression() : try parseOr())
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let only = items.first { return only }
            if !explicitParentheses { throw failure("Expected an expression, got \(describe(start))", start) }
        }
        return .tuple(items)
    }

    private mutating func parseExpression() throws(TemplateError) -> Expr {
        try nest(current)
        defer { depth -= 1 }
        var expression = try parseOr()
        var count = 0
        while isName("if") {
            try chain(&count)
            _ = advance()
            let condition = try parseOr()
            var otherwise: Expr? = nil
            if isName("else") {
                _ = advance()
                otherwise = try parseExpression()
            }
            expression = .conditional(condition: condition, then: expression, otherwise: otherwise)
        }
        return expression
    }

    private mutating func parseOr() throws(TemplateError) -> Expr {
        var left = try parseAnd()
        var count = 0
        while isName("or") {
            try chain(&count)
            _ = advance()
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws(TemplateError) -> Expr {
        var left = try parseNot()
        var count = 0
        while isName("and") {
            try chain(&count)
            _ = advance()
            left = .and(left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws(TemplateError) -> Expr {
        if isName("not") {
            try nest(advance())
            defer { depth -= 1 }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(TemplateError) -> Expr {
        let start = current.position
        let first = try parseMath1()
        var operations: [(String, Expr)] = []
        var count = 0
        while true {
            try chain(&count)
            if case .op(let op) = current.kind, ["==", "!=", ">", ">=", "<", "<="].contains(op) {
                _ = advance()
                operations.append((op, try parseMath1()))
            } else if isName("in") {
                _ = advance()
                operations.append(("in", try parseMath1()))
            } else if isName("not"), next.kind == .name("in") {
                _ = advance()
                _ = advance()
                operations.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return operations.isEmpty ? first : .compare(first, operations, start)
    }

    private mutating func parseMath1() throws(TemplateError) -> Expr {
        var left = try parseConcat()
        var count = 0
        while case .op(let op) = current.kind, op == "+" || op == "-" {
            try chain(&count)
            let position = advance().position
            left = .binary(op, left, try parseConcat(), position)
        }
        return left
    }

    private mutating func parseConcat() throws(TemplateError) -> Expr {
        let start = current.position
        var items = [try parseMath2()]
        while isOp("~") {
            _ = advance()
            items.append(try parseMath2())
        }
        return items.count == 1 ? items[0] : .concat(items, start)
    }

    private mutating func parseMath2() throws(TemplateError) -> Expr {
        var left = try parsePow()
        var count = 0
        while case .op(let op) = current.kind, ["*", "/", "//", "%"].contains(op) {
            try chain(&count)
            let position = advance().position
            left = .binary(op, left, try parsePow(), position)
        }
        return left
    }

    private mutating func parsePow() throws(TemplateError) -> Expr {
        var left = try parseUnary()
        var count = 0
        while isOp("**") {
            try chain(&count)
            let position = advance().position
            left = .binary("**", left, try parseUnary(), position)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws(TemplateError) -> Expr {
        var node: Expr
        if case .op(let op) = current.kind, op == "-" || op == "+" {
            let token = advance()
            try nest(token)
            defer { depth -= 1 }
            node = .unary(op, try parseUnary(withFilter: false), token.position)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    private mutating func parsePrimary() throws(TemplateError) -> Expr {
        let token = current
        switch token.kind {
        case .name(let name):
            _ = advance()
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name, token.position)
            }
        case .string(var text):
            _ = advance()
            while case .string(let more) = current.kind {
                text += more
                _ = advance()
            }
            return .literal(.string(text))
        case .integer(let value):
            _ = advance()
            return .literal(.int(value))
        case .float(let value):
            _ = advance()
            return .literal(.double(value))
        case .op("("):
            try nest(advance())
            defer { depth -= 1 }
            let inner = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return inner
        case .op("["):
            _ = advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            _ = advance()
            return .list(items)
        case .op("{"):
            _ = advance()
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            _ = advance()
            return .dict(pairs, token.position)
        default:
            throw failure("unexpected \(describe(token))", token)
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        var count = 0
        while true {
            try chain(&count)
            if isOp(".") {
                let dot = advance()
                switch current.kind {
                case .name(let name):
                    _ = advance()
                    node = .attribute(node, name, dot.position)
                case .integer(let value):
                    _ = advance()
                    node = .item(node, .literal(.int(value)), dot.position)
                default:
                    throw failure("expected a name after '.', got \(describe(current))")
                }
            } else if isOp("[") {
                let bracket = advance()
                node = try parseSubscript(node, bracket.position)
                try expectOp("]")
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ node: Expr, _ position: SourcePosition) throws(TemplateError) -> Expr {
        var start: Expr? = nil
        if !isOp(":") {
            start = try parseExpression()
            if !isOp(":") { return .item(node, start!, position) }
        }
        _ = advance()
        var stop: Expr? = nil
        var step: Expr? = nil
        if !isOp("]") && !isOp(":") { stop = try parseExpression() }
        if isOp(":") {
            _ = advance()
            if !isOp("]") { step = try parseExpression() }
        }
        return .slice(node, start, stop, step, position)
    }

    private mutating func parseCallArguments() throws(TemplateError) -> ([Expr], [(String, Expr)]) {
        try expectOp("(")
        var positional: [Expr] = []
        var keyword: [(String, Expr)] = []
        while !isOp(")") {
            if !(positional.isEmpty && keyword.isEmpty) { try expectOp(",") }
            if isOp(")") { break }
            if isOp("*") || isOp("**") {
                throw failure("*args and **kwargs in calls are not supported", code: .unsupported)
            }
            if case .name(let name) = current.kind, next.kind == .op("=") {
                _ = advance()
                _ = advance()
                keyword.append((name, try parseExpression()))
            } else {
                if !keyword.isEmpty { throw failure("positional argument follows keyword argument") }
                positional.append(try parseExpression())
            }
        }
        _ = advance()
        return (positional, keyword)
    }

    private mutating func parseCall(_ callee: Expr) throws(TemplateError) -> Expr {
        let position = current.position
        let (positional, keyword) = try parseCallArguments()
        return .call(callee, positional, keyword, position)
    }

    private mutating func parseFilterExpr(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        var count = 0
        while true {
            try chain(&count)
            if isOp("|") {
                _ = advance()
                let nameToken = current
                var name = try expectName()
                while isOp("."), case .name(let part) = next.kind {
                    _ = advance()
                    _ = advance()
                    name += "." + part
                }
                guard Interpreter.filterNames.contains(name) else {
                    throw failure("No filter named '\(name)'.", nameToken, code: .unsupported)
                }
                var positional: [Expr] = []
                var keyword: [(String, Expr)] = []
                if isOp("(") { (positional, keyword) = try parseCallArguments() }
                node = .filter(node, name, positional, keyword, nameToken.position)
            } else if isName("is") {
                _ = advance()
                var negated = false
                if isName("not") {
                    _ = advance()
                    negated = true
                }
                let nameToken = current
                var name = try expectName()
                while isOp("."), case .name(let part) = next.kind {
                    _ = advance()
                    _ = advance()
                    name += "." + part
                }
                guard Interpreter.testNames.contains(name) else {
                    throw failure("No test named '\(name)'.", nameToken, code: .unsupported)
                }
                var arguments: [Expr] = []
                if isOp("(") {
                    let (positional, keyword) = try parseCallArguments()
                    if !keyword.isEmpty { throw failure("keyword arguments to tests are not supported", code: .unsupported) }
                    arguments = positional
                } else {
                    switch current.kind {
                    case .name("else"), .name("or"), .name("and"): break
                    case .name("is"): throw failure("You cannot chain multiple tests with is")
                    case .name, .string, .integer, .float, .op("("), .op("["), .op("{"):
                        arguments = [try parsePostfix(try parsePrimary())]
                    default: break
                    }
                }
                node = .test(node, name, arguments, negated: negated, nameToken.position)
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }
}
