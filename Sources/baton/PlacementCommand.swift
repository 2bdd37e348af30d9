import ArgumentParser
import Cluster
import Dispatch
import Foundation
import Logging
import Placement
import RPC
import ServiceLifecycle

/// `baton placement …`: the placement service (the default subcommand) and its tools.
struct PlacementCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement",
        abstract: "Placement: decide which workers prefill and decode each request.",
        subcommands: [PlacementServeCommand.self, PlacementExplainCommand.self],
        defaultSubcommand: PlacementServeCommand.self
    )
}

/// `baton placement [serve]`: the placement service workers register with and routers ask.
struct PlacementServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the placement service (the default: `baton placement --config F …` is the same).",
        discussion: """
            Workers register and heartbeat here over mutual TLS; routers ask it for a prefill/decode pair per \
            request. Membership is an fsync'd append-only log in --state-dir (membership.log), replayed at \
            start, so a restarted service knows its workers. The policy file reloads on SIGHUP and when it \
            changes (checked every second); a bad edit is logged with its file:line:key and the old policy kept.
              baton certs --out certs --nodes placement,router,prefill-0,decode-0
              baton placement --config Deploy/config/policy.yaml --listen 127.0.0.1:7400 \\
                  --state-dir /var/lib/baton/placement --certs certs --node placement
            With --ca-key (the key of --certs' ca.pem), placement is also the cluster's CA: boxes join with \
            `baton join` and a token from `baton token create` (stored in --state-dir/join-tokens.json), and the \
            CA key stays on this box. See Deploy/docs/security.md.
            """
    )

    @Option(name: .long, help: "Placement policy YAML (see Deploy/config/policy.yaml); default: built-in defaults.")
    var config: String?

    @Option(name: .long, help: "Address to listen on, HOST:PORT.")
    var listen = "127.0.0.1:7400"

    @Option(name: .long, help: "Folder for the membership log (created when missing).")
    var stateDir: String

    @OptionGroup var identity: NodeTLSOptions
    @OptionGroup var listener: NodeListenerOptions

    @Option(name: .customLong("ca-key"), help: "The cluster CA's key (ca-key.pem beside --certs' ca.pem): lets nodes join with `baton join` and a token from `baton token create`.")
    var caKey: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        _ = try Endpoint.parse(listen, option: "--listen")
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if caKey != nil && identity.insecure {
            throw ValidationError("--ca-key needs TLS (--certs DIR --node NAME): a join token must never cross plaintext")
        }
    }

    func run() async throws {
        ParentWatch.exitWithParentIfAsked()
        var logger = Logger(label: "baton.placement") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let (host, port) = try Endpoint.parse(listen, option: "--listen")
        var configuration = PlacementService.Configuration(
            stateDirectory: stateDir, policyFile: config, tls: try identity.tls(), insecure: identity.insecure)
        configuration.host = host
        configuration.port = port
        configuration.limits = listener.limits
        if let caKey, let certs = identity.certs {
            do {
                configuration.additionalRoutes = try joinService(caKey: caKey, certs: certs, logger: logger).routes
            } catch {
                FileHandle.standardError.write(Data("baton placement: \(error)\n".utf8))
                throw ExitCode.failure
            }
            logger.info("this placement service is the cluster's CA: nodes may join with tokens from \(JoinTokenStore(directory: stateDir).path)")
        }
        let service: PlacementService
        do {
            service = try await PlacementService.start(configuration, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("baton placement: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        // SIGHUP reloads the policy; SIGTERM and SIGINT stop the service through its service group.
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP)
        hangup.setEventHandler {
            logger.info("SIGHUP: reloading the policy")
            Task { await service.reloadPolicy() }
        }
        hangup.resume()
        defer { hangup.cancel() }
        try await ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }
}

extension PlacementServeCommand {
    /// The join routes, signing with the CA in `certs` (ca.pem) and `caKey`. Names of the node certificates in
    /// `certs` that are still valid are reserved: a token without --replace cannot take them.
    func joinService(caKey: String, certs: String, logger: Logger) throws -> JoinService {
        let caURL = URL(fileURLWithPath: certs).appendingPathComponent("ca.pem")
        guard let certificate = try? String(contentsOf: caURL, encoding: .utf8) else {
            throw ValidationError("cannot read \(caURL.path), the CA certificate --ca-key belongs to")
        }
        guard let key = try? String(contentsOfFile: caKey, encoding: .utf8) else {
            throw ValidationError("cannot read the CA key \(caKey)")
        }
        do {
            // A store that cannot be read (bad mode, damaged file) stops the start rather than the first join.
            _ = try JoinTokenStore(directory: stateDir).tokens()
            return try JoinService(
                authority: ClusterCertificates.Issued(certificatePEM: certificate, privateKeyPEM: key),
                store: JoinTokenStore(directory: stateDir), reservedNames: JoinService.nodeNames(inFolder: certs),
                logger: logger)
        } catch {
            throw ValidationError("--ca-key \(caKey): \(error.message)")
        }
    }
}

/// `baton placement explain`: which workers a prompt of a given length would go to under a policy, and why.
struct PlacementExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show which workers would serve a prompt of a given length, with every candidate's score and reasons.",
        discussion: """
            The cluster comes from a membership log (--cluster, as the placement service writes it) or from \
            worker config files with declared profiles and optional assumed load (--workers, repeatable). \
            A membership log is taken as recorded: no heartbeat expiry is applied.
            """
    )

    @Option(name: .long, help: "Placement policy YAML file (see Deploy/config/policy.yaml).")
    var config: String

    @Option(name: .long, help: "Membership log (JSON lines) to take the cluster from.")
    var cluster: String?

    @Option(name: .long, help: "Worker config YAML (one worker, or a `workers:` list); repeatable.")
    var workers: [String] = []

    @Option(name: .long, help: "Prompt length in tokens.")
    var promptTokens: Int

    @Option(name: .long, help: ArgumentHelp(
        "Assume WORKER's prefix caches hold the prompt's first TOKENS tokens (WORKER=TOKENS); repeatable.",
        valueName: "worker=tokens"))
    var cached: [String] = []

    @Option(name: .long, help: "Seed for power_of_two sampling (default: the policy's balancing.seed, else 0).")
    var seed: UInt64?

    @Flag(name: .long, help: "Print the decision as JSON (snake_case keys) instead of text.")
    var json = false

    func validate() throws {
        if (cluster == nil) == workers.isEmpty {
            throw ValidationError("give exactly one of --cluster STATE.jsonl or --workers FILE")
        }
        if promptTokens < 0 { throw ValidationError("--prompt-tokens must be non-negative") }
        _ = try assumedCache()
    }

    /// `--cached` as worker → tokens.
    func assumedCache() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for entry in cached {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let tokens = Int(parts[1]), tokens >= 0 else {
                throw ValidationError("--cached \(entry): expected WORKER=TOKENS with TOKENS a non-negative integer")
            }
            guard result[parts[0]] == nil else { throw ValidationError("--cached names \(parts[0]) twice") }
            result[parts[0]] = tokens
        }
        return result
    }

    func run() async throws {
        do {
            let policy = try PlacementPolicy.load(path: config)
            let state: ClusterState
            if let cluster {
                guard let data = FileManager.default.contents(atPath: cluster) else {
                    throw PlacementError(.io, "cannot read membership log", location: .init(file: cluster))
                }
                // Read-only replay: explaining must never repair or append to a live service's log.
                let replay = try MembershipLog.replay(data, file: cluster)
                for warning in replay.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
                state = replay.state
            } else {
                state = try ClusterState.declared(workerFiles: workers)
            }
            var rng = SeededGenerator(seed: seed ?? policy.balancing.seed ?? 0)
            let assumed = try assumedCache()
            if let unknown = assumed.keys.sorted().first(where: { state.workers[$0] == nil }) {
                throw PlacementError(.invalidArgument, "--cached names \(unknown), which is not a worker of this cluster")
            }
            let prefix = PrefixMatch(promptTokens: promptTokens, assuming: assumed)
            let decision = try Placement.choose(promptTokens: promptTokens, state: state, policy: policy, prefix: prefix, rng: &rng)
            print(json ? try decision.explainJSON() : decision.explainText(policy: policy))
        } catch let error as PlacementError {
            FileHandle.standardError.write(Data("baton placement explain: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
