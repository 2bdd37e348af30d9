import Foundation

/// The repository's `Deploy/` files, found from this source file's location. Symlinks are resolved first,
/// so the tests also find the repository when their folder is linked into another package.
enum DeployFiles {
    /// The nearest folder above this file that holds `Deploy/setup.sh`; if none does, the folder two levels
    /// up (Tests/DeployTests/..), so that reading a file then fails with an error naming the path it tried.
    static let repositoryRoot: URL = {
        let testsFolder = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
        var directory = testsFolder
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Deploy/setup.sh").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        return testsFolder.deletingLastPathComponent().deletingLastPathComponent()
    }()

    /// A path under the repository root, e.g. `Deploy/compose/compose.yaml`.
    static func url(_ relativePath: String) -> URL {
        repositoryRoot.appendingPathComponent(relativePath)
    }

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: url(relativePath), encoding: .utf8)
    }

    /// Names of the files directly in a folder of the repository, sorted.
    static func names(in relativePath: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url(relativePath).path).sorted()
    }

    /// A fresh temporary folder; the caller removes it.
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("baton-deploy-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }
}
