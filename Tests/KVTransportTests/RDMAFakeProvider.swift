import Foundation
import KVTransport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Baton's emulated verbs provider (`Tests/FakeVerbs`, built as `libBatonFakeVerbs.so` next to the test
/// bundle), and its fault hook. Faults are per process: suites that inject them are serialized.
enum FakeVerbs {
    /// The library's path; the tests that need it fail with a clear message when it was not built.
    static let library: String? = {
        var candidates: [URL] = []
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("libBatonFakeVerbs.so"))
            directory = directory.deletingLastPathComponent()
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("libBatonFakeVerbs.so"))
        // This file is <package>/Tests/KVTransportTests/RDMAFakeProvider.swift.
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for configuration in ["debug", "release"] {
            candidates.append(package.appendingPathComponent(".build/\(configuration)/libBatonFakeVerbs.so"))
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }?.path
    }()

    /// The library's path, or a recorded failure explaining how to build it.
    static func path(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        guard let library else {
            Issue.record("libBatonFakeVerbs.so was not found next to the tests; build it: swift build --build-tests", sourceLocation: sourceLocation)
            throw KVTransportError(.rdma, "emulated verbs provider not built")
        }
        return library
    }

    /// RDMA settings that open `device` of the emulated provider.
    static func settings(device: String? = nil, gidIndex: Int32 = 0) throws -> RDMASettings {
        RDMASettings(library: try path(), device: device, gidIndex: gidIndex)
    }

    private typealias InjectFunction = @convention(c) (UnsafePointer<CChar>?, Int32, Int32, Int32) -> Int32

    /// `baton_fakeverbs_inject` of the loaded library (the same handle Baton's shim loaded).
    private static let injectFunction: InjectFunction? = {
        guard let library, let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL),
            let symbol = dlsym(handle, "baton_fakeverbs_inject")
        else { return nil }
        return unsafeBitCast(symbol, to: InjectFunction.self)
    }()

    /// Makes `point` misbehave `count` times (-1: always) after `skip` calls (see BatonFakeVerbs.h).
    static func inject(_ point: String, _ value: Int32, skip: Int32 = 0, count: Int32 = 1) throws {
        guard let injectFunction else { throw KVTransportError(.rdma, "baton_fakeverbs_inject not found") }
        let status = injectFunction(point, value, skip, count)
        #expect(status == 0, "baton_fakeverbs_inject(\(point)) failed with errno \(status)")
    }

    /// Removes every injected fault (each test starts clean and ends clean).
    static func clearFaults() {
        _ = injectFunction?(nil, 0, 0, 0)
    }

    // Values from <infiniband/verbs.h> and <errno.h> the tests inject.
    static let portDown: Int32 = 1  // IBV_PORT_DOWN
    static let remoteOperationError: Int32 = 11  // IBV_WC_REM_OP_ERR
    static let retryExceeded: Int32 = 12  // IBV_WC_RETRY_EXC_ERR
}
