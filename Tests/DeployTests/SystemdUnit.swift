import Foundation

/// A systemd unit file read as systemd reads it: `[Section]` headers, `Key=Value` lines (a trailing backslash
/// continues a line), comments starting with `#` or `;`.
struct SystemdUnit: Sendable {
    struct Entry: Sendable {
        var section: String
        var key: String
        var value: String
        var line: Int
    }

    var fileName: String
    var entries: [Entry]

    init(fileName: String, text: String) throws(DeployCheckFailure) {
        self.fileName = fileName
        entries = []
        var section = ""
        var pending = "", pendingLine = 0
        for (index, rawLine) in text.components(separatedBy: "\n").enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";")) { continue }
            if pending.isEmpty { pendingLine = index + 1 }
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
                continue
            }
            let logical = pending + line
            pending = ""
            if logical.hasPrefix("[") {
                guard logical.hasSuffix("]") else { throw DeployCheckFailure("\(fileName):\(pendingLine): bad section header") }
                section = String(logical.dropFirst().dropLast())
                continue
            }
            guard let equals = logical.firstIndex(of: "=") else {
                throw DeployCheckFailure("\(fileName):\(pendingLine): expected Key=Value, found \(logical)")
            }
            entries.append(Entry(
                section: section,
                key: logical[..<equals].trimmingCharacters(in: .whitespaces),
                value: logical[logical.index(after: equals)...].trimmingCharacters(in: .whitespaces),
                line: pendingLine))
        }
    }

    func values(_ key: String, in section: String = "Service") -> [String] {
        entries.filter { $0.section == section && $0.key == key }.map(\.value)
    }

    /// `KEY=VALUE` lines of an environment file; quotes around a value are removed.
    static func environmentFile(_ text: String) -> [String: String] {
        var variables: [String: String] = [:]
        for rawLine in text.components(separatedBy: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            var value = String(line[line.index(after: equals)...])
            if value.count >= 2, let quote = value.first, quote == "\"" || quote == "'", value.last == quote {
                value = String(value.dropFirst().dropLast())
            }
            variables[String(line[..<equals])] = value
        }
        return variables
    }

    /// `ExecStart=`'s words after systemd's substitutions: specifiers (`%i` → `instance`, `%d` the credentials
    /// folder, `%S` /var/lib, `%C` /var/cache), `${NAME}` as part of a word and a lone `$NAME` split on spaces.
    /// - Returns: the words, and the variables that `environment` does not set.
    func execStart(instance: String?, environment: [String: String]) throws(DeployCheckFailure)
        -> (words: [String], undefined: [String])
    {
        let starts = values("ExecStart")
        guard starts.count == 1 else { throw DeployCheckFailure("\(fileName): expected one ExecStart=, found \(starts.count)") }
        var undefined: [String] = []
        var words: [String] = []
        for token in try ShellWords.tokens(starts[0]) {
            guard case .word(var word) = token else {
                throw DeployCheckFailure("\(fileName): ExecStart= holds a shell operator; systemd runs no shell")
            }
            for (specifier, value) in [("%i", instance ?? "%i"), ("%d", "/run/credentials/\(fileName)"),
                                       ("%S", "/var/lib"), ("%C", "/var/cache")] {
                word = word.replacingOccurrences(of: specifier, with: value)
            }
            let isLoneVariable = word.hasPrefix("$") && !word.hasPrefix("${")
                && word.dropFirst().allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
            if isLoneVariable {
                let name = String(word.dropFirst())
                guard let value = environment[name] else { undefined.append(name); continue }
                words += value.split(separator: " ").map(String.init)
                continue
            }
            while let start = word.range(of: "${"), let end = word[start.upperBound...].firstIndex(of: "}") {
                let name = String(word[start.upperBound..<end])
                if environment[name] == nil { undefined.append(name) }
                word.replaceSubrange(start.lowerBound...end, with: environment[name] ?? "")
            }
            words.append(word)
        }
        return (words, undefined)
    }
}
