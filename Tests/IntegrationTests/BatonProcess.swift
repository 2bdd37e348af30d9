import Foundation
import Testing

/// A `baton` child process with its standard output and error captured to files (no pipe can fill up and stall
/// it), polled by the test.
final class BatonProcess: @unchecked Sendable {
    let process = Process()
    let arguments: [String]
    private let stdoutURL: URL
    private let stderrURL: URL

    /// Starts `baton arguments…`, with this process's environment plus `environment`.
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        self.arguments = arguments
        let directory = FileManager.default.temporaryDirectory
        let id = UUID().uuidString
        stdoutURL = directory.appendingPathComponent("baton-it-\(id).out")
        stderrURL = directory.appendingPathComponent("baton-it-\(id).err")
        FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = try Self.executable()
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }

    var standardOutput: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var standardError: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Standard output's complete lines parsed as JSON objects (other lines skipped).
    var jsonLines: [[String: Any]] {
        standardOutput.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// Waits until `condition` holds (polling every 20 ms); throws after `timeout`.
    func wait(for what: String, timeout: Duration = .seconds(30), _ condition: (BatonProcess) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(self) {
            guard ContinuousClock.now < deadline else {
                throw ProcessFailure("timed out waiting for \(what) from `baton \(arguments.prefix(2).joined(separator: " "))`; stderr:\n\(standardError)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the process to exit (killing it after `timeout`) and returns its exit status.
    @discardableResult
    func exitStatus(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                process.terminate()
                throw ProcessFailure("`baton \(arguments.prefix(2).joined(separator: " "))` did not exit within \(timeout); stderr:\n\(standardError)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Runs `baton arguments…` to completion; returns (status, stdout, stderr).
    static func run(
        _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
    ) async throws -> (status: Int32, output: String, error: String) {
        let child = try BatonProcess(arguments, environment: environment)
        let status = try await child.exitStatus(timeout: timeout)
        return (status, child.standardOutput, child.standardError)
    }

    /// The `baton` executable built next to the test bundle (`.build/<config>/baton`).
    static func executable() throws -> URL {
        var candidates: [URL] = []
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("baton"))
            directory = directory.deletingLastPathComponent()
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("baton"))
        // This file is <package>/Tests/IntegrationTests/BatonProcess.swift.
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for configuration in ["debug", "release"] {
            candidates.append(package.appendingPathComponent(".build/\(configuration)/baton"))
        }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        throw ProcessFailure(
            "the `baton` executable was not found (looked at \(candidates.map(\.path).joined(separator: ", "))); "
                + "build it first: swift build --build-tests")
    }
}

struct ProcessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
