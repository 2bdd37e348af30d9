/// jinja2's `loop` object.
final class LoopContext {
    let items: [Value]
    var index0 = 0
    let depth0: Int

    init(items: [Value], depth0: Int) {
        self.items = items
        self.depth0 = depth0
    }

    var length: Int { items.count }

    func attribute(_ name: String) -> Value? {
        switch name {
        case "index": return .int(index0 + 1)
        case "index0": return .int(index0)
        case "revindex": return .int(length - index0)
        case "revindex0": return .int(length - index0 - 1)
        case "first": return .bool(index0 == 0)
        case "last": return .bool(index0 == length - 1)
        case "length": return .int(length)
        case "depth": return .int(depth0 + 1)
        case "depth0": return .int(depth0)
        case "previtem": return index0 > 0 ? items[index0 - 1] : .undefined("there is no previous item")
        case "nextitem": return index0 + 1 < length ? items[index0 + 1] : .undefined("there is no next item")
        case "cycle":
            let position = index0
            return .callable(Callable("cycle") { arguments throws(TemplateError) in
                guard !arguments.positional.isEmpty else {
                    throw TemplateError(.type, "no items for cycling given")
                }
                return arguments.positional[position % arguments.positional.count]
            })
        default: return nil
        }
    }
}
