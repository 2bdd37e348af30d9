import Foundation
import Testing

/// The official `openai` Python client against a real `baton serve` process on loopback.
@Suite("OpenAI client against baton serve")
struct OpenAIClientTests {
    /// The Python with `openai` installed: `$BATON_PYTHON`, else the venv `Deploy/setup.sh` makes.
    static func python() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["BATON_PYTHON"], !explicit.isEmpty { return explicit }
        let venv = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/baton/venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: venv) else {
            throw ProcessFailure("no Python with the openai client at \(venv): run `bash Deploy/setup.sh` (or set BATON_PYTHON)")
        }
        return venv
    }

    /// A port the kernel just handed out (and released), so parallel runs do not collide.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProcessFailure("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw ProcessFailure("could not bind a loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("chat, streaming, completions, models, usage, stop strings, seeds and errors work through the openai client")
    func openAIClient() async throws {
        let python = try Self.python()
        let port = try Self.freePort()
        let server = try BatonProcess(["serve", "--port", "\(port)", "--context", "512", "--model-id", "smollm2"])
        defer { server.process.terminate() }
        try await server.wait(for: "the server to listen", timeout: .seconds(60)) { $0.standardError.contains("Server started") }

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/openai_client_check.py")
        let client = Process()
        client.executableURL = URL(fileURLWithPath: python)
        client.arguments = [script.path, "http://127.0.0.1:\(port)/v1", "smollm2"]
        let output = Pipe()
        client.standardOutput = output
        client.standardError = output
        try client.run()
        let deadline = ContinuousClock.now + .seconds(120)
        while client.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        if client.isRunning { client.terminate() }
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(client.terminationStatus == 0, "openai client checks:\n\(report)\nserver stderr:\n\(server.standardError)")
        #expect(report.contains("0 failed"))

        // Ctrl-C (SIGINT) stops the server cleanly.
        kill(server.process.processIdentifier, SIGINT)
        #expect(try await server.exitStatus(timeout: .seconds(20)) == 0)
    }
}
