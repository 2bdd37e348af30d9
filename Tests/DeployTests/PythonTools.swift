import Foundation

/// The validators in Baton's Python venv (made by `Deploy/setup.sh`): `$BATON_VENV`, else ~/.cache/baton/venv.
enum PythonTools {
    static let venv: URL = {
        if let path = ProcessInfo.processInfo.environment["BATON_VENV"], !path.isEmpty {
            return URL(fileURLWithPath: path, isDirectory: true)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/baton/venv", isDirectory: true)
    }()

    /// `bin/NAME` in the venv, or an error that says how to install it.
    static func tool(_ name: String) throws -> URL {
        let url = venv.appendingPathComponent("bin").appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw DeployCheckFailure("""
                \(url.path) is missing: run `bash Deploy/setup.sh` (it installs kubernetes-validate and \
                check-jsonschema into the venv; set BATON_VENV to use another venv)
                """)
        }
        return url
    }

    /// Every YAML document in a file as JSON-compatible values (PyYAML from the venv, where
    /// kubernetes-validate brings it). Merge keys (`<<: *anchor`) are resolved.
    static func yamlDocuments(_ file: URL) throws -> [Any] {
        let script = "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)"
        let run = try ToolRun.run(try tool("python"), ["-c", script, file.path])
        if run.standardError.contains("No module named 'yaml'") {
            throw DeployCheckFailure("PyYAML is missing from \(venv.path): run `bash Deploy/setup.sh`")
        }
        guard run.status == 0 else {
            throw DeployCheckFailure("cannot parse \(file.path) as YAML:\n\(run.standardError)")
        }
        let value = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8), options: [.fragmentsAllowed])
        guard let documents = value as? [Any] else { throw DeployCheckFailure("\(file.path): expected YAML documents") }
        return documents.filter { !($0 is NSNull) }
    }
}
