import Foundation
import Testing

@Suite("The flag checks catch a deploy file that uses a flag the CLI spec lacks")
struct BrokenFlagTests {
    /// A copy of a Deploy/ folder with `original` replaced by `broken` in one file.
    static func brokenCopy(of folder: String, file: String, _ original: String, _ broken: String) throws -> URL {
        let copy = try DeployFiles.temporaryDirectory()
        for name in try DeployFiles.names(in: folder) {
            var text = try DeployFiles.text("\(folder)/\(name)")
            if name == file {
                #expect(text.contains(original), "\(file) no longer contains \(original)")
                text = text.replacingOccurrences(of: original, with: broken)
            }
            try text.write(to: copy.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return copy
    }

    static func failures(_ found: [DeployInvocations.Found]) -> [String] {
        found.compactMap { item in
            if case .failure(let failure) = BatonCLISpec.parse(item.words, source: item.source) { return failure.description }
            return nil
        }
    }

    @Test("a unit's example environment file with an unknown worker flag")
    func systemd() throws {
        let copy = try Self.brokenCopy(of: "Deploy/systemd", file: "worker-decode-1.env.example",
                                       "--max-batch 16", "--max-batch-size 16")
        defer { try? FileManager.default.removeItem(at: copy) }
        let failures = Self.failures(try DeployInvocations.systemd(folder: copy).found)
        #expect(failures.count == 1 && failures[0].contains("--max-batch-size is not a flag of `baton worker`"), "\(failures)")
    }

    @Test("a compose service with an unknown router flag")
    func compose() throws {
        let copy = try Self.brokenCopy(of: "Deploy/compose", file: "compose.yaml", "--node, router", "--name, router")
        defer { try? FileManager.default.removeItem(at: copy) }
        let failures = Self.failures(try DeployInvocations.compose(file: copy.appendingPathComponent("compose.yaml")))
        #expect(failures.count == 1 && failures[0].contains("--name is not a flag of `baton router`"), "\(failures)")
    }

    @Test("a Kubernetes worker with an unknown flag inside its shell script")
    func kubernetes() throws {
        let copy = try Self.brokenCopy(of: "Deploy/kubernetes", file: "prefill.yaml", "--advertise ", "--advertise-address ")
        defer { try? FileManager.default.removeItem(at: copy) }
        let failures = Self.failures(try DeployInvocations.kubernetes(folder: copy))
        #expect(failures.count == 1 && failures[0].contains("--advertise-address is not a flag of `baton worker`"), "\(failures)")
    }
}
