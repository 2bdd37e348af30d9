import Foundation

/// One finished run of an external program: exit status and what it printed.
struct ToolRun: Sendable {
    var status: Int32
    var standardOutput: String
    var standardError: String

    /// Both streams, for failure messages.
    var output: String { standardOutput + standardError }

    /// Runs `executable arguments…` to completion. Output goes through files rather than pipes, so a chatty
    /// program cannot fill a pipe and stall.
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:],
                    currentDirectory: URL? = nil) throws -> ToolRun {
        let directory = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("out"), errURL = directory.appendingPathComponent("err")
        guard FileManager.default.createFile(atPath: outURL.path, contents: nil),
              FileManager.default.createFile(atPath: errURL.path, contents: nil) else {
            throw DeployCheckFailure("cannot create output files in \(directory.path)")
        }
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        do {
            try process.run()
        } catch {
            throw DeployCheckFailure("cannot run \(executable.path): \(error)")
        }
        process.waitUntilExit()
        try out.close()
        try err.close()
        return ToolRun(
            status: process.terminationStatus,
            standardOutput: try String(contentsOf: outURL, encoding: .utf8),
            standardError: try String(contentsOf: errURL, encoding: .utf8))
    }

    /// The first executable called `name` on `PATH`.
    static func onPath(_ name: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }
}
