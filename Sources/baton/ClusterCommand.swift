import ArgumentParser
import Cluster
import Foundation

/// `baton cluster …`: look at a running cluster through its placement service.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Inspect a running cluster.",
        subcommands: [ClusterStatusCommand.self]
    )
}

/// `baton cluster status`: the workers the placement service knows, their roles, profiles and load.
struct ClusterStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the workers, roles, profiles, load and transports the placement service knows, and its policy."
    )

    @OptionGroup var placement: PlacementAddressOptions

    @OptionGroup var identity: NodeTLSOptions

    @Flag(name: .long, help: "Print the status as JSON (snake_case keys) instead of a table.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for the answer, connecting included.")
    var timeout: Double = 5

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let (host, port) = try placement.endpoint()
        let client = PlacementClient(
            host: host, port: port, tls: try identity.tls(), insecure: identity.insecure,
            timeout: .milliseconds(Int(timeout * 1000)))
        let status: ClusterStatus
        do {
            status = try await client.status()
        } catch {
            await client.close()
            FileHandle.standardError.write(Data("baton cluster status: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        await client.close()
        print(json ? try status.renderedJSON() : status.renderedTable())
    }
}
