import Foundation

/// The `baton` command lines in the committed deploy files, each with where it was found.
enum DeployInvocations {
    struct Found: Sendable {
        var source: String
        var words: [String]
    }

    /// `baton` command lines in a container's argv: the argv itself when it starts with `baton`, or the
    /// commands of an `sh -c SCRIPT` / `bash -c SCRIPT`.
    static func commands(inArgv argv: [String]) throws(DeployCheckFailure) -> [[String]] {
        if argv.count >= 3, ["sh", "bash"].contains(argv[0].split(separator: "/").last.map(String.init) ?? ""),
           argv[1] == "-c" {
            return try ShellWords.batonCommands(in: argv[2])
        }
        if let first = argv.first, ShellWords.isBaton(first) { return [argv] }
        return []
    }

    static func strings(_ value: Any?) -> [String]? {
        if let list = value as? [Any] { return list.map { "\($0)" } }
        if let text = value as? String { return ["sh", "-c", text] }
        return nil
    }

    // MARK: systemd

    /// Each unit's ExecStart, expanded with its `Environment=` lines and its `EnvironmentFile=`'s example
    /// beside it (`/etc/baton/router.env` → `router.env.example`). A template's `%i` in that file name matches
    /// any instance: `worker-%i.env` finds `worker-prefill-1.env.example`, and each such example is one instance.
    static func systemd(folder: URL = DeployFiles.url("Deploy/systemd")) throws -> (found: [Found], problems: [String]) {
        var found: [Found] = [], problems: [String] = []
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        func variables(_ name: String) throws -> [String: String] {
            SystemdUnit.environmentFile(try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8))
        }
        for unitName in names where unitName.hasSuffix(".service") {
            let unit = try SystemdUnit(fileName: unitName, text: try String(
                contentsOf: folder.appendingPathComponent(unitName), encoding: .utf8))
            var inline: [String: String] = [:]
            for assignments in unit.values("Environment") {
                let lines = assignments.replacingOccurrences(of: " ", with: "\n")
                inline.merge(SystemdUnit.environmentFile(lines)) { _, new in new }
            }
            let files = unit.values("EnvironmentFile")
            guard files.count <= 1 else {
                problems.append("\(unitName): more than one EnvironmentFile= (the check reads one)")
                continue
            }
            var instances: [(instance: String?, environment: [String: String])] = [(nil, inline)]
            if let reference = files.first {
                let optional = reference.hasPrefix("-")
                let base = String((optional ? reference.dropFirst() : reference[...]).split(separator: "/").last ?? "")
                let matches = examples(of: base, among: names)
                if matches.isEmpty && !optional {
                    problems.append("\(unitName): no \(base).example beside it for EnvironmentFile=\(reference)")
                }
                if !matches.isEmpty {
                    instances = try matches.map { ($0.instance, inline.merging(try variables($0.file)) { _, new in new }) }
                }
            }
            for (instance, environment) in instances {
                let source = unitName + (instance.map { " (instance \($0))" } ?? "")
                if unitName.hasSuffix("@.service") && instance == nil {
                    problems.append("\(source): a template unit needs an example environment file naming an instance")
                    continue
                }
                let (words, undefined) = try unit.execStart(instance: instance, environment: environment)
                for name in undefined { problems.append("\(source): ExecStart= uses $\(name), which no environment sets") }
                found.append(Found(source: source, words: words))
            }
        }
        return (found, problems)
    }

    /// The `.example` files for an environment file name, with the instance each stands for when the name
    /// has a `%i`.
    static func examples(of base: String, among names: [String]) -> [(instance: String?, file: String)] {
        let parts = base.components(separatedBy: "%i")
        return names.compactMap { name in
            guard name.hasSuffix(".example") else { return nil }
            let stem = String(name.dropLast(".example".count))
            if parts.count == 1 { return stem == base ? (nil, name) : nil }
            guard parts.count == 2, stem.count > parts[0].count + parts[1].count,
                  stem.hasPrefix(parts[0]), stem.hasSuffix(parts[1]) else { return nil }
            return (String(stem.dropFirst(parts[0].count).dropLast(parts[1].count)), name)
        }
    }

    // MARK: Compose

    static func compose(file: URL = DeployFiles.url("Deploy/compose/compose.yaml")) throws -> [Found] {
        guard let document = try PythonTools.yamlDocuments(file).first as? [String: Any],
              let services = document["services"] as? [String: Any] else {
            throw DeployCheckFailure("\(file.path): no services")
        }
        var found: [Found] = []
        for (name, value) in services.sorted(by: { $0.key < $1.key }) {
            guard let service = value as? [String: Any] else { continue }
            // `$$` is Compose's escape for a literal `$`.
            let argv = ((strings(service["entrypoint"]) ?? []) + (strings(service["command"]) ?? []))
                .map { $0.replacingOccurrences(of: "$$", with: "$") }
            for words in try commands(inArgv: argv) {
                found.append(Found(source: "\(file.lastPathComponent) services.\(name)", words: words))
            }
        }
        return found
    }

    // MARK: Kubernetes

    /// The pod specs of the workloads in a manifest, with a name for each.
    static func podSpecs(in documents: [Any]) -> [(name: String, spec: [String: Any])] {
        documents.compactMap { document in
            guard let resource = document as? [String: Any], let kind = resource["kind"] as? String,
                  let metadata = resource["metadata"] as? [String: Any], let name = metadata["name"] as? String,
                  let spec = resource["spec"] as? [String: Any] else { return nil }
            if kind == "Pod" { return ("\(kind)/\(name)", spec) }
            guard let template = spec["template"] as? [String: Any],
                  let podSpec = template["spec"] as? [String: Any] else { return nil }
            return ("\(kind)/\(name)", podSpec)
        }
    }

    static func containers(of podSpec: [String: Any]) -> [[String: Any]] {
        ((podSpec["initContainers"] as? [Any] ?? []) + (podSpec["containers"] as? [Any] ?? []))
            .compactMap { $0 as? [String: Any] }
    }

    /// A container's `command` followed by its `args`.
    static func argv(of container: [String: Any]) -> [String] {
        (container["command"] as? [Any] ?? []).map { "\($0)" } + (container["args"] as? [Any] ?? []).map { "\($0)" }
    }

    static func kubernetes(folder: URL = DeployFiles.url("Deploy/kubernetes")) throws -> [Found] {
        var found: [Found] = []
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        for file in files where file.hasSuffix(".yaml") && file != "kustomization.yaml" {
            let documents = try PythonTools.yamlDocuments(folder.appendingPathComponent(file))
            for (workload, spec) in podSpecs(in: documents) {
                for container in containers(of: spec) {
                    for words in try commands(inArgv: argv(of: container)) {
                        found.append(Found(source: "\(file) \(workload) container \(container["name"] ?? "?")",
                                           words: words))
                    }
                }
            }
        }
        return found
    }
}
