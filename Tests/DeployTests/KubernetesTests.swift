import Foundation
import Testing

@Suite("Kubernetes manifests in Deploy/kubernetes")
struct KubernetesTests {
    static let folder = "Deploy/kubernetes"

    /// The files kustomization.yaml lists.
    static func resources() throws -> [String] {
        let documents = try PythonTools.yamlDocuments(DeployFiles.url("\(folder)/kustomization.yaml"))
        let kustomization = try #require(documents.first as? [String: Any])
        return try #require(kustomization["resources"] as? [String])
    }

    static func documents(_ file: String) throws -> [[String: Any]] {
        try PythonTools.yamlDocuments(DeployFiles.url("\(folder)/\(file)")).compactMap { $0 as? [String: Any] }
    }

    @Test("every manifest validates strictly against Kubernetes 1.37 (kubernetes-validate --strict)")
    func manifestsValidate() throws {
        let files = try Self.resources().map { DeployFiles.url("\(Self.folder)/\($0)") }
        let problems = try Validators.kubernetes(files)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("a broken copy of a manifest fails strict validation", arguments: [
        ("  strategy:\n    type: Recreate\n", "  strategy:\n    type: Recreate\n  replica: 1\n"),
        ("kind: Deployment\n", "kind: Deploymnet\n"),
        ("  replicas: 1\n", "  replicas: one\n"),
        ("              containerPort: 7400\n", "              containerPort: \"7400\"\n"),
    ])
    func brokenCopyFails(original: String, broken: String) throws {
        let text = try DeployFiles.text("\(Self.folder)/placement.yaml")
        #expect(text.contains(original))
        let copy = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        let url = copy.appendingPathComponent("placement.yaml")
        try text.replacingOccurrences(of: original, with: broken).write(to: url, atomically: true, encoding: .utf8)
        #expect(try !Validators.kubernetes([url]).isEmpty, "accepted a manifest with \(broken)")
    }

    @Test("kustomization.yaml lists every manifest in the folder")
    func kustomizationIsComplete() throws {
        let manifests = try DeployFiles.names(in: Self.folder).filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }
        #expect(try Self.resources().sorted() == manifests)
    }

    @Test("the policy ConfigMap carries Deploy/config/policy.yaml unchanged")
    func policyConfigMapMatches() throws {
        let configMap = try #require(try Self.documents("policy-configmap.yaml").first)
        let data = try #require(configMap["data"] as? [String: String])
        #expect(data["policy.yaml"] == (try DeployFiles.text("Deploy/config/policy.yaml")),
                "run: bash Deploy/kubernetes/make-policy-configmap.sh")
    }

    @Test("every baton flag in the manifests is one the CLI spec lists")
    func flagsAreInTheSpec() throws {
        let invocations = BatonFlagChecks.check(try DeployInvocations.kubernetes())
        #expect(Set(invocations.map(\.subcommand)) == ["placement", "worker", "router"])
        #expect(Set(invocations.compactMap { $0.value(of: "--role") }) == ["prefill", "decode"])
    }

    /// The workloads' pod specs by `Kind/name`.
    static func podSpecs() throws -> [String: [String: Any]] {
        var specs: [String: [String: Any]] = [:]
        for file in try resources() {
            for (name, spec) in DeployInvocations.podSpecs(in: try documents(file)) { specs[name] = spec }
        }
        return specs
    }

    @Test("prefill and decode run on nodes labelled for their role")
    func workersFollowNodeLabels() throws {
        let specs = try Self.podSpecs()
        for role in ["prefill", "decode"] {
            let spec = try #require(specs["DaemonSet/baton-\(role)"])
            #expect(spec["nodeSelector"] as? [String: String] == ["baton.dev/role": role])
            let worker = try #require(DeployInvocations.containers(of: spec).first { $0["name"] as? String == "worker" })
            let found = try DeployInvocations.commands(inArgv: DeployInvocations.argv(of: worker))
            let invocation = try #require(BatonFlagChecks.check(found.map { .init(source: role, words: $0) }).first)
            #expect(invocation.value(of: "--role") == role)
        }
    }

    @Test("each baton container mounts the certificate of the node it names, and the CA, never the CA key")
    func certificatesMatchNodes() throws {
        var checked: Set<String> = []
        for (workload, spec) in try Self.podSpecs() {
            let volumes = (spec["volumes"] as? [[String: Any]]) ?? []
            for container in DeployInvocations.containers(of: spec) {
                for words in try DeployInvocations.commands(inArgv: DeployInvocations.argv(of: container)) {
                    let invocation = try BatonCLISpec.parse(words, source: workload).get()
                    guard let node = invocation.value(of: "--node"), let directory = invocation.value(of: "--certs") else {
                        Issue.record("\(workload) runs baton without --certs/--node")
                        continue
                    }
                    let mounts = (container["volumeMounts"] as? [[String: Any]]) ?? []
                    let mount = try #require(mounts.first { $0["mountPath"] as? String == directory },
                                             "\(workload): nothing mounted at \(directory)")
                    let volume = try #require(volumes.first { $0["name"] as? String == mount["name"] as? String })
                    let secret = try #require(volume["secret"] as? [String: Any], "\(workload): \(directory) is no Secret")
                    #expect(secret["secretName"] as? String == "baton-certs")
                    let keys = Set(((secret["items"] as? [[String: Any]]) ?? []).compactMap { $0["key"] as? String })
                    #expect(keys == ["ca.pem", "\(node).pem", "\(node)-key.pem"], "\(workload) mounts \(keys)")
                    checked.insert(workload)
                }
            }
        }
        #expect(checked == ["Deployment/baton-placement", "DaemonSet/baton-prefill", "DaemonSet/baton-decode",
                            "Deployment/baton-router"])
    }

    @Test("every container has a memory limit and the router is ready only when GET /health answers")
    func resourcesAndProbes() throws {
        let specs = try Self.podSpecs()
        #expect(specs.count == 4)
        for (workload, spec) in specs {
            for container in DeployInvocations.containers(of: spec) {
                let resources = container["resources"] as? [String: [String: Any]]
                #expect(resources?["limits"]?["memory"] != nil, "\(workload) \(container["name"] ?? "")")
                #expect(resources?["requests"]?["cpu"] != nil, "\(workload) \(container["name"] ?? "")")
            }
        }
        let router = try #require(specs["Deployment/baton-router"].flatMap { DeployInvocations.containers(of: $0).last })
        let probe = try #require((router["readinessProbe"] as? [String: Any])?["httpGet"] as? [String: Any])
        #expect(probe["path"] as? String == "/health")
    }

    // MARK: make-secret.sh

    static func runMakeSecret(_ directory: URL, environment: [String: String] = [:]) throws -> ToolRun {
        let bash = try #require(ToolRun.onPath("bash"))
        return try ToolRun.run(bash, [DeployFiles.url("\(folder)/make-secret.sh").path, directory.path],
                               environment: environment)
    }

    static func writePEMs(_ names: [String], in directory: URL) throws {
        for name in names {
            let kind = name.hasSuffix("-key.pem") ? "PRIVATE KEY" : "CERTIFICATE"
            try "-----BEGIN \(kind)-----\nMIIB\(name)\n-----END \(kind)-----\n"
                .write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
    }

    static let nodeFiles = ["ca.pem"] + ["placement", "router", "prefill", "decode"].flatMap { ["\($0).pem", "\($0)-key.pem"] }

    @Test("make-secret.sh turns a baton certs folder into a Secret that validates and leaves out the CA key")
    func makeSecret() throws {
        let directory = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.writePEMs(Self.nodeFiles + ["ca-key.pem"], in: directory)
        let run = try Self.runMakeSecret(directory)
        try #require(run.status == 0, "\(run.standardError)")
        #expect(!run.standardOutput.contains("ca-key"))
        let secretFile = directory.appendingPathComponent("secret.yaml")
        try run.standardOutput.write(to: secretFile, atomically: true, encoding: .utf8)
        let problems = try Validators.kubernetes([secretFile])
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        let secret = try #require(try PythonTools.yamlDocuments(secretFile).first as? [String: Any])
        let data = try #require(secret["stringData"] as? [String: String])
        #expect(Set(data.keys) == Set(Self.nodeFiles))
        let routerKey = try String(contentsOf: directory.appendingPathComponent("router-key.pem"), encoding: .utf8)
        #expect(data["router-key.pem"] == routerKey)
    }

    @Test("make-secret.sh refuses a folder that lacks a node's key")
    func makeSecretNeedsEveryFile() throws {
        let directory = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.writePEMs(Self.nodeFiles.filter { $0 != "decode-key.pem" }, in: directory)
        let run = try Self.runMakeSecret(directory)
        #expect(run.status != 0)
        #expect(run.standardError.contains("decode-key.pem is missing"))
    }

    @Test("make-secret.sh runs baton certs for the nodes the manifests name when the folder has no CA")
    func makeSecretRunsBatonCerts() throws {
        let directory = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let certsDirectory = directory.appendingPathComponent("certs")
        // A stand-in `baton` that records its arguments and writes the files `baton certs` would.
        let fake = directory.appendingPathComponent("baton")
        let names = (Self.nodeFiles + ["ca-key.pem"]).joined(separator: " ")
        try """
            #!/bin/sh
            echo "$@" > "\(directory.path)/arguments"
            mkdir -p "$3"
            for f in \(names); do printf -- '-----BEGIN X-----\\nMIIB\\n-----END X-----\\n' > "$3/$f"; done
            """.write(to: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake.path)
        let run = try Self.runMakeSecret(certsDirectory, environment: ["BATON": fake.path])
        try #require(run.status == 0, "\(run.standardError)")
        let arguments = try String(contentsOf: directory.appendingPathComponent("arguments"), encoding: .utf8)
        let words = ["baton"] + arguments.split(whereSeparator: \.isWhitespace).map(String.init)
        let invocation = try BatonCLISpec.parse(words, source: "make-secret.sh").get()
        #expect(invocation.subcommand == "certs")
        let nodes = Set((invocation.value(of: "--nodes") ?? "").split(separator: ",").map(String.init))
        let used = Set(BatonFlagChecks.check(try DeployInvocations.kubernetes()).compactMap { $0.value(of: "--node") })
        #expect(nodes == used)
    }
}
