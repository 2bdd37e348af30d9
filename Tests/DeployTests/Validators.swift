import Foundation

/// The three validators, run as real processes; each returns what it found wrong (empty when the files pass).
enum Validators {
    // MARK: systemd-analyze

    /// The units' ExecStart binary, which `systemd-analyze verify` requires to exist.
    static let unitBinary = "/usr/local/bin/baton"

    /// `systemd-analyze verify` on copies of the units in `folder` (the repository's, or a test's broken
    /// copy), with the binary path pointed at a stand-in executable; a template unit is verified as instance
    /// `example`. verify exits 0 even for unknown keys and unparsable values (it only logs them), so any
    /// output counts as a problem.
    static func systemdAnalyzeVerify(unitsIn folder: URL) throws -> [String] {
        guard let analyze = ToolRun.onPath("systemd-analyze") else {
            throw DeployCheckFailure("systemd-analyze is not on PATH: install Debian's systemd package (apt-get install systemd)")
        }
        let work = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let standIn = work.appendingPathComponent("baton")
        try "#!/bin/sh\nexit 0\n".write(to: standIn, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: standIn.path)
        var units: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() where name.hasSuffix(".service") {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            try text.replacingOccurrences(of: unitBinary, with: standIn.path)
                .write(to: work.appendingPathComponent(name), atomically: true, encoding: .utf8)
            units.append("./" + name.replacingOccurrences(of: "@.service", with: "@example.service"))
        }
        guard !units.isEmpty else { return ["no .service files in \(folder.path)"] }
        let run = try ToolRun.run(analyze, ["verify"] + units, currentDirectory: work)
        let output = run.output.trimmingCharacters(in: .whitespacesAndNewlines)
        if run.status != 0 || !output.isEmpty {
            let located = output.replacingOccurrences(of: work.path, with: folder.path)
            return ["systemd-analyze verify exited \(run.status):\n\(located)"]
        }
        return []
    }

    // MARK: check-jsonschema (Compose specification)

    /// `check-jsonschema --builtin-schema vendor.compose-spec`: the Compose specification's JSON schema, which
    /// check-jsonschema ships (no network).
    static func composeSpec(_ file: URL) throws -> [String] {
        let run = try ToolRun.run(try PythonTools.tool("check-jsonschema"),
                                  ["--builtin-schema", "vendor.compose-spec", file.path])
        return run.status == 0 ? [] : ["check-jsonschema exited \(run.status):\n\(run.output)"]
    }

    // MARK: kubernetes-validate

    static let kubernetesVersion = "1.37.0"

    /// `kubernetes-validate --strict` (unknown fields are errors) against Kubernetes 1.37. It only warns,
    /// exiting 0, about a kind it has no schema for — a misspelt `kind` — so warnings count as problems, and
    /// every YAML document must be reported as passed.
    static func kubernetes(_ files: [URL]) throws -> [String] {
        let run = try ToolRun.run(try PythonTools.tool("kubernetes-validate"),
                                  ["--strict", "--kubernetes-version", kubernetesVersion] + files.map(\.path))
        var problems: [String] = []
        if run.status != 0 { problems.append("kubernetes-validate exited \(run.status)") }
        let lines = run.output.split(separator: "\n")
        problems += lines.filter { !$0.hasPrefix("INFO") }.map(String.init)
        let passed = lines.filter { $0.hasPrefix("INFO") && $0.contains(" passed for resource ") }.count
        let documents = try files.reduce(0) { $0 + (try PythonTools.yamlDocuments($1).count) }
        if passed != documents {
            problems.append("kubernetes-validate passed \(passed) resources of \(documents) documents:\n\(run.output)")
        }
        return problems
    }
}
