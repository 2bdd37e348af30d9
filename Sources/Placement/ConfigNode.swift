import Foundation
import Yams

/// A YAML node together with the file it came from and its key path, so every validation error can
/// name the file, line, column and key. Built on Yams' node API (`Yams.compose`), which keeps marks.
///
/// Conventions shared by every config file of this module:
/// - an absent key or an explicit null (`key:` with nothing after it) means "use the documented default";
/// - unknown keys are errors, with a "did you mean" suggestion when one known key is close;
/// - numbers are range-checked and the error says the accepted range.
///
/// Public so that config files read elsewhere (the simulator's cluster file) keep these conventions and errors.
public struct ConfigNode {
    let node: Node
    public let file: String
    /// Dotted key path from the document root, for example `prefill.min_gflops` or `workers[0].name`.
    public let path: String

    /// Parses `yaml`; returns nil for an empty document.
    public static func parse(yaml: String, file: String) throws(PlacementError) -> ConfigNode? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw Self.translate(error, file: file)
        } catch {
            throw PlacementError(.invalidConfig, "not valid YAML", location: .init(file: file),
                                 cause: UnderlyingError(description: "\(error)"))
        }
        guard let root else { return nil }
        return ConfigNode(node: root, file: file, path: "")
    }

    /// Reads and parses a file; returns nil for an empty document.
    public static func load(path: String) throws(PlacementError) -> ConfigNode? {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PlacementError(.io, "cannot read config file", location: .init(file: path),
                                 cause: UnderlyingError(description: error.localizedDescription))
        }
        return try parse(yaml: text, file: path)
    }

    private static func translate(_ error: YamlError, file: String) -> PlacementError {
        func located(_ problem: String, _ mark: Mark) -> PlacementError {
            PlacementError(.invalidConfig, "not valid YAML: \(problem)",
                           location: .init(file: file, line: mark.line, column: mark.column))
        }
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return located(problem, mark)
        case let .duplicatedKeysInMapping(duplicates, context):
            return PlacementError(
                .invalidConfig, "key appears twice in one mapping",
                location: .init(file: file, line: context.mark.line, column: context.mark.column,
                                key: duplicates.sorted().joined(separator: ", ")))
        default:
            return PlacementError(.invalidConfig, "not valid YAML", location: .init(file: file),
                                  cause: UnderlyingError(description: "\(error)"))
        }
    }

    // MARK: Errors

    public var location: PlacementError.Location {
        PlacementError.Location(file: file, line: node.mark?.line, column: node.mark?.column,
                                key: path.isEmpty ? nil : path)
    }

    /// An `invalidConfig` error located at this node.
    public func error(_ message: String) -> PlacementError {
        PlacementError(.invalidConfig, message, location: location)
    }

    public var isNull: Bool {
        if case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any {
            return node.tag == .init(.null)
        }
        return false
    }

    private var kind: String {
        switch node {
        case .scalar: return isNull ? "null" : "a scalar (\(String(reflecting: node.string ?? "")))"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    // MARK: Structure

    /// The mapping's entries keyed by name. Every key must be in `allowed`; otherwise the error is
    /// located at the offending key and suggests the closest allowed key.
    public func mapping(allowed: [String]) throws(PlacementError) -> [String: ConfigNode] {
        if isNull { return [:] }
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, found \(kind)") }
        var result: [String: ConfigNode] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string, case .scalar = keyNode else {
                throw ConfigNode(node: keyNode, file: file, path: path).error("keys must be plain strings")
            }
            let childPath = path.isEmpty ? key : "\(path).\(key)"
            guard allowed.contains(key) else {
                var message = "unknown key '\(key)'"
                if let suggestion = Self.closest(to: key, in: allowed) {
                    message += "; did you mean '\(suggestion)'?"
                } else {
                    message += "; allowed keys: \(allowed.joined(separator: ", "))"
                }
                throw ConfigNode(node: keyNode, file: file, path: childPath).error(message)
            }
            result[key] = ConfigNode(node: valueNode, file: file, path: childPath)
        }
        return result
    }

    /// A string-keyed mapping whose keys are free-form (labels): each value must be a scalar.
    public func stringMap() throws(PlacementError) -> [String: String] {
        if isNull { return [:] }
        guard case .mapping(let mapping) = node else { throw error("expected a mapping of strings, found \(kind)") }
        var result: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard case .scalar = keyNode, let key = keyNode.string else {
                throw ConfigNode(node: keyNode, file: file, path: path).error("keys must be plain strings")
            }
            let child = ConfigNode(node: valueNode, file: file, path: path.isEmpty ? key : "\(path).\(key)")
            result[key] = try child.string()
        }
        return result
    }

    public func sequence() throws(PlacementError) -> [ConfigNode] {
        if isNull { return [] }
        guard case .sequence(let sequence) = node else { throw error("expected a list, found \(kind)") }
        return sequence.enumerated().map { index, element in
            ConfigNode(node: element, file: file, path: "\(path)[\(index)]")
        }
    }

    // MARK: Scalars

    private var scalarText: String? {
        if case .scalar(let scalar) = node { return scalar.string }
        return nil
    }

    public func string() throws(PlacementError) -> String {
        guard let text = scalarText, !isNull else { throw error("expected a string, found \(kind)") }
        return text
    }

    public func stringList() throws(PlacementError) -> [String] {
        var result: [String] = []
        for element in try sequence() { result.append(try element.string()) }
        return result
    }

    public func bool() throws(PlacementError) -> Bool {
        guard let value = node.bool, scalarText != nil else { throw error("expected true or false, found \(kind)") }
        return value
    }

    /// A number within `range` (inclusive). Integers are accepted where numbers are expected.
    public func double(in range: ClosedRange<Double>) throws(PlacementError) -> Double {
        guard scalarText != nil, let value = node.float ?? node.int.map(Double.init), value.isFinite else {
            throw error("expected a number, found \(kind)")
        }
        guard range.contains(value) else { throw error("\(Self.format(value)) is out of range \(Self.describe(range))") }
        return value
    }

    public func int(in range: ClosedRange<Int>) throws(PlacementError) -> Int {
        guard scalarText != nil, let value = node.int else { throw error("expected an integer, found \(kind)") }
        guard range.contains(value) else { throw error("\(value) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    /// One of the given spellings, for example `least_loaded` or `power_of_two`.
    public func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type) throws(PlacementError) -> T where T.RawValue == String {
        let text = try string()
        if let value = T(rawValue: text) { return value }
        let names = T.allCases.map(\.rawValue)
        var message = "'\(text)' is not one of \(names.joined(separator: ", "))"
        if let suggestion = Self.closest(to: text, in: names) { message += "; did you mean '\(suggestion)'?" }
        throw error(message)
    }

    /// A byte count: a non-negative integer, or a number with a unit (`512MiB`, `8 GiB`, `2GB`, `1.5 TiB`).
    public func bytes() throws(PlacementError) -> Int {
        if let value = node.int, scalarText != nil {
            guard value >= 0 else { throw error("\(value) is out of range 0... (bytes)") }
            return value
        }
        guard let text = scalarText, !isNull, let value = ByteCount.parse(text) else {
            throw error("expected a byte count such as 8GiB, 512MiB or 1073741824, found \(kind)")
        }
        return value
    }

    // MARK: Helpers

    /// The allowed word nearest to `word` by edit distance, if it is close enough to be a likely typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let lowered = word.lowercased()
        // A key missing its unit suffix (`ttft` for `ttft_ms`) or with extra letters is a likely slip too.
        let affixed = candidates.filter { $0.hasPrefix(lowered) || lowered.hasPrefix($0) }
        if affixed.count == 1, lowered.count >= 3 { return affixed[0] }
        let scored = candidates.map { ($0, editDistance(lowered, $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, word.count / 3) ? best.0 : nil
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    private static func describe(_ range: ClosedRange<Double>) -> String {
        let upper = range.upperBound == .greatestFiniteMagnitude ? "" : format(range.upperBound)
        return "\(format(range.lowerBound))...\(upper)"
    }
}

