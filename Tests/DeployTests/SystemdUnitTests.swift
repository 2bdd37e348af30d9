import Foundation
import Testing

@Suite("systemd units in Deploy/systemd")
struct SystemdUnitTests {
    static let folder = "Deploy/systemd"

    static func unit(_ name: String) throws -> SystemdUnit {
        try SystemdUnit(fileName: name, text: try DeployFiles.text("\(folder)/\(name)"))
    }

    @Test("systemd-analyze verify accepts every unit (its binary path pointed at a stand-in executable)")
    func systemdAnalyzeAcceptsTheUnits() throws {
        let problems = try Validators.systemdAnalyzeVerify(unitsIn: DeployFiles.url(Self.folder))
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("systemd-analyze verify reports a broken unit", arguments: [
        ("Restart=on-failure", "Restart=sometimes"),
        ("KillSignal=SIGTERM", "KillSignal=SIGTERM\nDrainSeconds=60"),
        ("[Service]", "[Servce]"),
    ])
    func systemdAnalyzeRejectsABrokenUnit(original: String, broken: String) throws {
        let copy = try DeployFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        let text = try DeployFiles.text("\(Self.folder)/baton-router.service")
        #expect(text.contains(original))
        try text.replacingOccurrences(of: original, with: broken)
            .write(to: copy.appendingPathComponent("baton-router.service"), atomically: true, encoding: .utf8)
        let problems = try Validators.systemdAnalyzeVerify(unitsIn: copy)
        #expect(!problems.isEmpty, "systemd-analyze verify accepted a unit with \(broken)")
    }

    @Test("the three services exist: placement, a worker template and the router")
    func theUnitsExist() throws {
        let units = try DeployFiles.names(in: Self.folder).filter { $0.hasSuffix(".service") }
        #expect(units == ["baton-placement.service", "baton-router.service", "baton-worker@.service"])
    }

    @Test("every unit restarts on failure, drains on SIGTERM and runs unprivileged", arguments: [
        "baton-placement.service", "baton-router.service", "baton-worker@.service",
    ])
    func unitsAreHardened(name: String) throws {
        let unit = try Self.unit(name)
        #expect(unit.values("Restart") == ["on-failure"])
        #expect(unit.values("KillSignal") == ["SIGTERM"])
        let timeout = try #require(unit.values("TimeoutStopSec").first)
        let seconds = try #require(Int(timeout.replacingOccurrences(of: "s", with: "")), "TimeoutStopSec=\(timeout)")
        #expect(seconds >= 30, "\(name) gives only \(seconds) s to drain")
        #expect(unit.values("User") == ["baton"] || unit.values("DynamicUser") == ["yes"])
        for (key, value) in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                             ("CapabilityBoundingSet", "")] {
            #expect(unit.values(key) == [value], "\(name): \(key)=\(value)")
        }
        // Certificates come through systemd's credentials, never read by the service user from /etc.
        #expect(unit.values("LoadCredential").contains { $0.hasPrefix("ca.pem:") })
    }

    @Test("placement keeps its membership log in a StateDirectory and reloads the policy on SIGHUP")
    func placementStateAndReload() throws {
        let unit = try Self.unit("baton-placement.service")
        let state = try #require(unit.values("StateDirectory").first)
        let start = try unit.execStart(instance: nil, environment: ["BATON_POLICY": "p", "BATON_LISTEN": "l"]).words
        let stateDir = try #require(start.firstIndex(of: "--state-dir").map { start[$0 + 1] })
        #expect(stateDir == "/var/lib/\(state)")
        #expect(unit.values("ExecReload").first?.contains("-HUP") == true)
    }

    @Test("every variable an ExecStart uses is set by the unit or its example environment file")
    func environmentIsComplete() throws {
        let (found, problems) = try DeployInvocations.systemd()
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        #expect(Set(found.map(\.source)) == [
            "baton-placement.service",
            "baton-router.service",
            "baton-worker@.service (instance decode-1)",
            "baton-worker@.service (instance prefill-1)",
        ])
    }

    @Test("every baton flag in the units (with their example environments) is one the CLI spec lists")
    func flagsAreInTheSpec() throws {
        let invocations = BatonFlagChecks.check(try DeployInvocations.systemd().found)
        #expect(Set(invocations.map(\.subcommand)) == ["placement", "worker", "router"])
        #expect(Set(invocations.compactMap { $0.value(of: "--role") }) == ["prefill", "decode"])
        // The instance name is the worker's node name, which picks its certificate.
        for worker in invocations where worker.subcommand == "worker" {
            #expect(worker.source.hasSuffix("(instance \(worker.value(of: "--node") ?? "?"))"))
        }
    }
}
