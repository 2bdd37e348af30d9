import ArgumentParser
import Foundation
import Placement

/// `baton placement …`: the placement service and its tools.
struct PlacementCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement",
        abstract: "Placement: decide which workers prefill and decode each request.",
        subcommands: [PlacementExplainCommand.self]
    )
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

    @Option(name: .long, help: "Seed for power_of_two sampling (default: the policy's balancing.seed, else 0).")
    var seed: UInt64?

    @Flag(name: .long, help: "Print the decision as JSON (snake_case keys) instead of text.")
    var json = false

    func validate() throws {
        if (cluster == nil) == workers.isEmpty {
            throw ValidationError("give exactly one of --cluster STATE.jsonl or --workers FILE")
        }
        if promptTokens < 0 { throw ValidationError("--prompt-tokens must be non-negative") }
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
            let decision = try Placement.choose(promptTokens: promptTokens, state: state, policy: policy, rng: &rng)
            print(json ? try decision.explainJSON() : decision.explainText(policy: policy))
        } catch let error as PlacementError {
            FileHandle.standardError.write(Data("baton placement explain: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
