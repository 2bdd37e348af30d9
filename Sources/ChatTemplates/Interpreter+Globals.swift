import Foundation

extension Interpreter {
    /// The global functions Hugging Face's environment provides, plus jinja2's own.
    static func globals() -> [String: Value] {
        var globals: [String: Value] = [:]
        globals["raise_exception"] = .callable(Callable("raise_exception") { arguments throws(TemplateError) in
            let bound = try arguments.bind("raise_exception", [("message", nil)])
            throw TemplateError(.raised, bound[0].str)
        })
        globals["strftime_now"] = .callable(Callable("strftime_now") { arguments throws(TemplateError) in
            let bound = try arguments.bind("strftime_now", [("format", nil)])
            guard case .string(let format) = bound[0] else {
                throw TemplateError(.type, "strftime() argument 1 must be str, not \(bound[0].typeName)")
            }
            return .string(strftimeNow(format))
        })
        globals["range"] = .callable(Callable("range") { arguments throws(TemplateError) in
            var numbers: [Int] = []
            for value in arguments.positional {
                guard let number = Operators.integer(value) else {
                    throw TemplateError(.type, "'\(value.typeName)' object cannot be interpreted as an integer")
                }
                numbers.append(number)
            }
            let (start, stop, step): (Int, Int, Int)
            switch numbers.count {
            case 1: (start, stop, step) = (0, numbers[0], 1)
            case 2: (start, stop, step) = (numbers[0], numbers[1], 1)
            case 3: (start, stop, step) = (numbers[0], numbers[1], numbers[2])
            default: throw TemplateError(.type, "range expected at most 3 arguments, got \(numbers.count)")
            }
            guard step != 0 else { throw TemplateError(.type, "range() arg 3 must not be zero") }
            let values = Array(stride(from: start, to: stop, by: step).prefix(100_001))
            guard values.count <= 100_000 else {
                throw TemplateError(.type, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
            }
            return .list(values.map { .int($0) })
        })
        globals["namespace"] = .callable(Callable("namespace") { arguments throws(TemplateError) in
            let namespace = Namespace()
            for value in arguments.positional {
                guard case .dict(let dict) = value else {
                    throw TemplateError(.type, "namespace() takes a mapping as its positional argument")
                }
                for (key, item) in dict.fields { namespace.values[key] = item }
            }
            for (key, item) in arguments.keyword { namespace.values[key] = item }
            return .namespace(namespace)
        })
        globals["dict"] = .callable(Callable("dict") { arguments throws(TemplateError) in
            var dict = Dict()
            for value in arguments.positional {
                guard case .dict(let source) = value else { throw TemplateError(.type, "dict() takes a mapping") }
                for (key, item) in source.fields { dict[key] = item }
            }
            for (key, item) in arguments.keyword { dict[key] = item }
            return .dict(dict)
        })
        return globals
    }

    /// Python's `datetime.now().strftime(format)` (local time, C `strftime`).
    private static func strftimeNow(_ format: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 512)
        let written = strftime(&buffer, buffer.count, format, &parts)
        return written == 0 ? "" : String(decoding: buffer.prefix(written).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
