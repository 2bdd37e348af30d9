import ClusterProtocol
import Foundation
import RPC
import Testing

/// Issue 19's attacks on a real cluster of processes (placement, one prefill and one decode worker, the router)
/// with the certificates `baton certs` issued: each one, sent with the certificate an attacker holding one node's
/// key would have, is refused with a 403 that names the rule, logged by the refusing node, and a chat through the
/// router still works afterwards.
@Suite("Hostile peers on a loopback cluster")
struct HostileClusterTests {
    /// One running cluster and the certificates of its nodes.
    struct Cluster {
        let directory: URL
        let certs: String
        let placement: String
        let base: String
        let processes: [String: BatonProcess]
        /// decode-0's and prefill-0's listeners, from the cluster status.
        let workers: [String: (host: String, port: Int)]
        let status: [[String: Any]]

        func tls(_ node: String) throws -> NodeTLS {
            func read(_ name: String) throws -> String { try String(contentsOfFile: "\(certs)/\(name)", encoding: .utf8) }
            return NodeTLS(
                certificateAuthorityPEM: try read("ca.pem"), certificateChainPEM: try read("\(node).pem"),
                privateKeyPEM: try read("\(node)-key.pem"))
        }

        /// `path` on `host:port` sent with `node`'s certificate; the client only insists on talking to a cluster node.
        func call(
            _ path: String, at address: (host: String, port: Int), as node: String, body: [UInt8]
        ) async throws -> NodeResponse {
            let client = try await NodeClient.connect(
                host: address.host, port: address.port, tls: try tls(node), expecting: .anyNode)
            defer { Task { await client.close() } }
            return try await client.call(path, body: body, contentType: "application/json", timeout: .seconds(10))
        }

        var placementAddress: (host: String, port: Int) {
            let parts = placement.split(separator: ":")
            return (String(parts[0]), Int(parts[1])!)
        }

        /// A chat through the router; the test fails unless it answers 200.
        func chatStillWorks(after attack: String) async throws {
            let (code, body) = try await ClusterLoopbackTests.chat(base, "Say hi.")
            #expect(code == 200, "after \(attack): \(body)")
        }
    }

    static func startCluster() async throws -> Cluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certs = directory.appendingPathComponent("certs").path
        let made = try await BatonProcess.run(["certs", "--out", certs, "--nodes", "placement,router,prefill-0,decode-0"])
        #expect(made.status == 0, "\(made.error)")
        let policy = directory.appendingPathComponent("policy.yaml").path
        try ClusterLoopbackTests.write(policy, "disaggregation:\n  min_prompt_tokens: 0\n")
        let placement = "127.0.0.1:\(try OpenAIClientTests.freePort())"
        var processes: [String: BatonProcess] = [:]
        processes["placement"] = try BatonProcess([
            "placement", "--config", policy, "--listen", placement, "--state-dir", directory.appendingPathComponent("state").path,
            "--certs", certs, "--node", "placement",
        ])
        for (name, role) in [("prefill-0", "prefill"), ("decode-0", "decode")] {
            let config = try ClusterLoopbackTests.writeWorkerConfig(in: directory, name: name, role: role)
            processes[name] = try BatonProcess([
                "worker", "--role", role, "--placement", placement, "--listen", "127.0.0.1:\(try OpenAIClientTests.freePort())",
                "--certs", certs, "--node", name, "--config", config, "--context", "512", "--threads", "1",
            ])
        }
        let routerPort = try OpenAIClientTests.freePort()
        processes["router"] = try BatonProcess([
            "router", "--placement", placement, "--certs", certs, "--node", "router", "--port", "\(routerPort)", "--context", "512",
        ])
        let base = "http://127.0.0.1:\(routerPort)"
        let status = try await ClusterLoopbackTests.waitForWorkers(count: 2, placement: placement, certs: certs)
        try await processes["router"]!.wait(for: "the router to be ready", timeout: .seconds(60)) { _ in
            (try? ClusterLoopbackTests.syncStatus("\(base)/health")) == 200
        }
        var workers: [String: (host: String, port: Int)] = [:]
        for worker in status {
            guard let name = worker["name"] as? String, let address = worker["address"] as? [String: Any],
                let host = address["host"] as? String, let port = address["port"] as? Int
            else { continue }
            workers[name] = (host, port)
        }
        return Cluster(
            directory: directory, certs: certs, placement: placement, base: base, processes: processes, workers: workers,
            status: status)
    }

    static func stop(_ cluster: Cluster) async {
        for process in cluster.processes.values where process.process.isRunning {
            kill(process.process.processIdentifier, SIGTERM)
        }
        for process in cluster.processes.values { _ = try? await process.exitStatus(timeout: .seconds(40)) }
        try? FileManager.default.removeItem(at: cluster.directory)
    }

    static func json(_ object: Any) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    static func message(_ response: NodeResponse) -> String {
        ((try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any])?["message"] as? String
            ?? response.bodyText
    }

    @Test("every attack from the issue's list is refused with 403 from the matching certificate, and chat keeps working")
    func attacksAreRefused() async throws {
        let cluster = try await Self.startCluster()
        defer { for process in cluster.processes.values where process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) } }
        try await cluster.chatStillWorks(after: "start-up")
        let decode = try #require(cluster.workers["decode-0"])
        let prefill = try #require(cluster.workers["prefill-0"])
        let decodeEntry = try #require(cluster.status.first { $0["name"] as? String == "decode-0" })
        let profile = try #require(decodeEntry["profile"] as? [String: Any])
        func registration(roles: [String], port: Int) throws -> [UInt8] {
            try Self.json([
                "profile": profile, "roles": roles, "address": ["host": "127.0.0.1", "port": port, "host_id": "evil"],
                "model_fingerprint": "whatever",
            ])
        }

        // Impersonation: the router's certificate registers as decode-0 elsewhere (the route is for workers only) …
        let byRouter = try await cluster.call(
            BatonProtocol.Placement.register, at: cluster.placementAddress, as: "router",
            body: try registration(roles: ["decode"], port: 9))
        #expect(byRouter.status == 403)
        #expect(Self.message(byRouter) == "only decode or prefill nodes may call this; the certificate allows router")
        // … and prefill-0's certificate, which may register, may not do so as decode-0.
        let byPrefill = try await cluster.call(
            BatonProtocol.Placement.register, at: cluster.placementAddress, as: "prefill-0",
            body: try registration(roles: ["decode"], port: 9))
        #expect(byPrefill.status == 403)
        #expect(Self.message(byPrefill) == #"the certificate of prefill-0 (prefill) may not act as worker "decode-0""#)
        // decode-0's own certificate may not claim a role it does not list.
        let extraRole = try await cluster.call(
            BatonProtocol.Placement.register, at: cluster.placementAddress, as: "decode-0",
            body: try registration(roles: ["decode", "prefill"], port: decode.port))
        #expect(extraRole.status == 403)
        #expect(Self.message(extraRole) == "the certificate of decode-0 (decode) does not allow the prefill role")
        try await cluster.chatStillWorks(after: "the impersonation attempts")
        let after = try await ClusterLoopbackTests.waitForWorkers(count: 2, placement: cluster.placement, certs: cluster.certs)
        let decodeAddress = after.first { $0["name"] as? String == "decode-0" }?["address"] as? [String: Any]
        #expect(decodeAddress?["port"] as? Int == decode.port, "decode-0's address must not have moved")

        // Denial: heartbeats with draining and leave under another worker's name.
        let drain = try await cluster.call(
            BatonProtocol.Placement.heartbeat, at: cluster.placementAddress, as: "prefill-0",
            body: try Self.json(["name": "decode-0", "draining": true, "load": ["queue_depth": 0, "active_sequences": 0, "free_kv_blocks": 0, "total_kv_blocks": 0]]))
        #expect(drain.status == 403)
        #expect(Self.message(drain).contains(#"may not act as worker "decode-0""#))
        let leave = try await cluster.call(
            BatonProtocol.Placement.leave, at: cluster.placementAddress, as: "prefill-0", body: try Self.json(["name": "decode-0"]))
        #expect(leave.status == 403)
        try await cluster.chatStillWorks(after: "the denial attempts")

        // Only routers choose, open decodes, submit prefills and cancel.
        let choose = try await cluster.call(
            BatonProtocol.Placement.choose, at: cluster.placementAddress, as: "decode-0", body: try Self.json(["prompt_tokens": 5]))
        #expect(choose.status == 403)
        #expect(Self.message(choose) == "only router nodes may call this; the certificate allows decode")
        let open = try await cluster.call(BatonProtocol.WorkerControl.openDecode, at: decode, as: "prefill-0", body: [])
        #expect(open.status == 403)
        let submit = try await cluster.call(BatonProtocol.WorkerControl.submitPrefill, at: prefill, as: "decode-0", body: [])
        #expect(submit.status == 403)
        let cancel = try await cluster.call(BatonProtocol.WorkerControl.cancel, at: decode, as: "prefill-0", body: [])
        #expect(cancel.status == 403)
        // Only prefill nodes send KV, and decode nodes moving a generation (each only for requests opened for it).
        let kv = try await cluster.call(BatonProtocol.transferPath, at: decode, as: "router", body: [0, 0, 0, 0])
        #expect(kv.status == 403)
        #expect(Self.message(kv) == "only decode or prefill nodes may call this; the certificate allows router")
        let move = try await cluster.call(BatonProtocol.WorkerControl.moveDecode, at: decode, as: "prefill-0", body: [])
        #expect(move.status == 403)
        try await cluster.chatStillWorks(after: "the role attempts")

        // A client checks the server: placement's clients refuse a worker's listener posing as placement.
        let posing = await #expect(throws: RPCError.self) {
            let client = try await NodeClient.connect(
                host: decode.host, port: decode.port, tls: try cluster.tls("router"), expecting: .role(.placement))
            defer { Task { await client.close() } }
            _ = try await client.call(BatonProtocol.Placement.status, method: "GET", timeout: .seconds(5))
        }
        #expect(posing?.code == .forbidden)
        #expect(posing?.message.contains("presents the certificate of decode-0 (decode), which may not act as placement") == true)

        // Every refusal was logged by the refusing node, naming both sides.
        let placementLog = cluster.processes["placement"]!.standardError
        #expect(placementLog.contains("placement (placement) refused /v1/workers/register from prefill-0 (prefill)"), "\(placementLog.suffix(2000))")
        #expect(placementLog.contains("placement (placement) refused /v1/workers/register from router (router)"))
        let decodeLog = cluster.processes["decode-0"]!.standardError
        #expect(decodeLog.contains("decode-0 (decode) refused /baton.v1.KVTransfer/Transfer from router (router)"), "\(decodeLog.suffix(2000))")
        await Self.stop(cluster)
    }
}
