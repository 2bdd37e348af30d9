/// A constant in the template source.
enum Literal: Sendable {
    case none, bool(Bool), int(Int), double(Double), string(String)
}

/// An expression node. Positions point at the token that starts (or, for operators, names) the node.
indirect enum Expr: Sendable {
    case literal(Literal)
    case name(String, SourcePosition)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)], SourcePosition)
    case attribute(Expr, String, SourcePosition)
    case item(Expr, Expr, SourcePosition)
    case slice(Expr, Expr?, Expr?, Expr?, SourcePosition)
    case call(Expr, [Expr], [(String, Expr)], SourcePosition)
    case filter(Expr, String, [Expr], [(String, Expr)], SourcePosition)
    case test(Expr, String, [Expr], negated: Bool, SourcePosition)
    case unary(String, Expr, SourcePosition)
    case binary(String, Expr, Expr, SourcePosition)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case not(Expr)
    case compare(Expr, [(String, Expr)], SourcePosition)
    case concat([Expr], SourcePosition)
    case conditional(condition: Expr, then: Expr, otherwise: Expr?)
}

/// What a `set` or `for` binds to.
enum Target: Sendable {
    case name(String)
    case tuple([String])
    case attribute(object: String, attribute: String)
}

/// A statement node.
indirect enum Node: Sendable {
    case text(String)
    case output(Expr, SourcePosition)
    case ifChain([(Expr, [Node])], otherwise: [Node])
    case forLoop(target: Target, iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], SourcePosition)
    case set(Target, Expr, SourcePosition)
    case setBlock(String, [Node])
    case macro(name: String, parameters: [(String, Expr?)], body: [Node])
    case breakLoop(SourcePosition)
    case continueLoop(SourcePosition)
    case generation([Node])
}
