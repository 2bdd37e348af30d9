import Foundation
import Testing

@Suite("Compose file in Deploy/compose")
struct ComposeTests {
    static let file = "Deploy/compose/compose.yaml"

    @Test("compose.yaml validates against the Compose specification's schema (check-jsonschema)")
    func validatesAgainstTheComposeSpec() throws {
        let problems = try Validators.composeSpec(DeployFiles.url(Self.file))
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("a broken copy of compose.yaml fails the Compose specification's schema", arguments: [
        ("    stop_grace_period: 30s\n", "    stop_grace_period: 30s\n    replica: 2\n"),
        ("condition: service_healthy\n", "condition: service_ready\n"),
        ("\nvolumes:\n", "\nvolume:\n"),
    ])
    func brokenCopyFails(original: String, broken: String) throws {
        let text = try DeployFiles.text(Self.file)
        #expect(text.contains(original))
        let copy = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        let url = copy.appendingPathComponent("compose.yaml")
        try text.replacingOccurrences(of: original, with: broken).write(to: url, atomically: true, encoding: .utf8)
        #expect(try !Validators.composeSpec(url).isEmpty, "accepted a compose file with \(broken)")
    }

    @Test("every baton flag in compose.yaml is one the CLI spec lists")
    func flagsAreInTheSpec() throws {
        let invocations = BatonFlagChecks.check(try DeployInvocations.compose())
        #expect(Set(invocations.map(\.subcommand)) == ["certs", "placement", "worker", "router"])
        #expect(Set(invocations.compactMap { $0.value(of: "--role") }) == ["prefill", "decode"])
    }

    @Test("every node name a service uses has a certificate from the certs service")
    func nodesHaveCertificates() throws {
        let invocations = BatonFlagChecks.check(try DeployInvocations.compose())
        let certs = try #require(invocations.first { $0.subcommand == "certs" })
        let issued = Set((certs.value(of: "--nodes") ?? "").split(separator: ",").map(String.init))
        let used = invocations.compactMap { $0.value(of: "--node") }
        #expect(!used.isEmpty)
        for node in used { #expect(issued.contains(node), "no certificate for node \(node)") }
        for invocation in invocations where invocation.value(of: "--certs") != nil {
            #expect(invocation.value(of: "--certs") == certs.value(of: "--out"), "\(invocation.source)")
        }
    }

    @Test("the prefill service runs replicas and every baton service builds from the Dockerfile")
    func replicasAndImage() throws {
        let document = try #require(try PythonTools.yamlDocuments(DeployFiles.url(Self.file)).first as? [String: Any])
        let services = try #require(document["services"] as? [String: [String: Any]])
        let replicas = (services["prefill"]?["deploy"] as? [String: Any])?["replicas"] as? Int
        #expect((replicas ?? 0) >= 2)
        let dockerfile = DeployFiles.url("Deploy/compose/Dockerfile")
        for name in ["certs", "placement", "prefill", "decode", "router"] {
            let build = try #require(services[name]?["build"] as? [String: Any], "service \(name) has no build")
            let context = DeployFiles.url("Deploy/compose").appendingPathComponent(build["context"] as? String ?? "")
            let path = context.appendingPathComponent(build["dockerfile"] as? String ?? "Dockerfile").standardized
            #expect(path.path == dockerfile.standardized.path, "service \(name) builds \(path.path)")
        }
        let text = try String(contentsOf: dockerfile, encoding: .utf8)
        #expect(text.contains("FROM swift:${SWIFT_VERSION}-bookworm AS build"))
        #expect(text.contains("FROM debian:bookworm-slim"))
        #expect(text.contains("libopenblas0"))
    }
}
