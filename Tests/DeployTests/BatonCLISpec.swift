/// The `baton` command lines the cluster processes accept, copied from the contract in
/// /work/dev/CLUSTER-SPEC.md ("Processes and command lines (exact)"), which the `baton` subcommands
/// implement. The deploy files may use only these flags; when the contract changes, change this table.
struct BatonCLISpec: Sendable {
    /// A subcommand's flags: those that take a value, those that stand alone, and those it cannot run without.
    struct Subcommand: Sendable {
        var valueFlags: Set<String>
        var booleanFlags: Set<String> = []
        var required: Set<String> = []
        /// `(--certs DIR --node NAME | --insecure)`: mutual TLS with this node's certificate, or plaintext.
        var needsIdentity = false
        /// Allowed values of flags that take one of a few words.
        var choices: [String: Set<String>] = [:]
    }

    static let identityFlags: Set<String> = ["--certs", "--node"]

    static let nodeListenerFlags: Set<String> = [
        "--handshake-timeout", "--idle-connection-timeout", "--max-connections", "--max-connections-per-peer",
    ]
    static let apiListenerFlags: Set<String> = [
        "--max-connections", "--max-connections-per-client", "--request-read-timeout", "--idle-connection-timeout",
    ]

    static let subcommands: [String: Subcommand] = [
        "placement": Subcommand(
            valueFlags: identityFlags.union(["--config", "--listen", "--state-dir", "--ca-key"]).union(nodeListenerFlags),
            booleanFlags: ["--insecure"], required: ["--config", "--state-dir"], needsIdentity: true),
        "cluster status": Subcommand(
            valueFlags: identityFlags.union(["--placement", "--timeout"]),
            booleanFlags: ["--insecure", "--json"], required: ["--placement"], needsIdentity: true),
        "worker": Subcommand(
            valueFlags: identityFlags.union(["--role", "--placement", "--listen", "--advertise", "--config", "--model",
                                             "--threads", "--kv-blocks", "--max-batch", "--context", "--drain-timeout",
                                             "--kv-start-timeout", "--peer-kv-share"]).union(nodeListenerFlags),
            booleanFlags: ["--insecure", "--no-prefix-caching"],
            required: ["--role", "--placement", "--listen"], needsIdentity: true,
            choices: ["--role": ["prefill", "decode", "both"]]),
        "router": Subcommand(
            valueFlags: identityFlags.union(["--placement", "--host", "--port", "--model", "--api-keys",
                                             "--served-model-name", "--model-id", "--chat-template"]).union(apiListenerFlags),
            booleanFlags: ["--insecure"], required: ["--placement"], needsIdentity: true),
        "up": Subcommand(
            valueFlags: ["--port", "--model", "--state-dir", "--policy", "--threads", "--chat-template"],
            booleanFlags: ["--no-prefix-caching"]),
        "bench serve": Subcommand(
            valueFlags: ["--url", "--concurrency", "--requests", "--prompt-words", "--max-tokens"],
            booleanFlags: ["--json"], required: ["--url"]),
        "certs": Subcommand(valueFlags: ["--out", "--nodes"], required: ["--out"]),
        "token create": Subcommand(
            valueFlags: ["--state-dir", "--certs", "--roles", "--ttl"], booleanFlags: ["--replace"],
            required: ["--state-dir", "--roles"]),
        "join": Subcommand(
            valueFlags: ["--placement", "--token", "--token-file", "--name", "--roles", "--out", "--timeout"],
            booleanFlags: ["--force"], required: ["--placement", "--name", "--roles", "--out"]),
    ]

    /// A `baton …` command line as the deploy files spell it, split into its subcommand and flags.
    struct Invocation: Sendable, Equatable {
        /// Where it was found, for messages: a file and the place in it.
        var source: String
        var subcommand: String
        /// Flags in order.
        var flags: [Flag]

        func value(of flag: String) -> String? {
            flags.first { $0.name == flag }?.value
        }
    }

    struct Flag: Sendable, Equatable {
        var name: String
        /// nil for a boolean flag.
        var value: String?
    }

    /// Parses `words` (starting with `baton`) against the table.
    /// - Returns: the invocation, or the problems found, each naming `source`.
    static func parse(_ words: [String], source: String) -> Result<Invocation, DeployCheckFailure> {
        var rest = words.dropFirst()[...]
        guard let first = rest.popFirst() else { return .failure(.init("\(source): `baton` without a subcommand")) }
        var name = first
        if subcommands[name] == nil, let second = rest.first, subcommands["\(first) \(second)"] != nil {
            name = "\(first) \(second)"
            rest.removeFirst()
        }
        guard let spec = subcommands[name] else {
            return .failure(.init("\(source): `baton \(first)` is not a subcommand of the cluster contract"))
        }
        var problems: [String] = []
        var flags: [Flag] = []
        while let word = rest.popFirst() {
            guard word.hasPrefix("--") else {
                problems.append("unexpected argument '\(word)'")
                continue
            }
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            let flag = parts[0]
            if spec.valueFlags.contains(flag) {
                var value = parts.count == 2 ? parts[1] : nil
                if value == nil, let next = rest.first, !next.hasPrefix("--") {
                    value = next
                    rest.removeFirst()
                }
                guard let value, !value.isEmpty else {
                    problems.append("\(flag) needs a value")
                    continue
                }
                if let allowed = spec.choices[flag], !allowed.contains(value) {
                    problems.append("\(flag) \(value) is not one of \(allowed.sorted().joined(separator: "|"))")
                }
                flags.append(Flag(name: flag, value: value))
            } else if spec.booleanFlags.contains(flag) {
                if parts.count == 2 { problems.append("\(flag) takes no value") }
                flags.append(Flag(name: flag, value: nil))
            } else {
                problems.append("\(flag) is not a flag of `baton \(name)`")
            }
        }
        let given = Set(flags.map(\.name))
        for flag in spec.required.subtracting(given).sorted() { problems.append("\(flag) is missing") }
        if spec.needsIdentity {
            let hasIdentity = identityFlags.isSubset(of: given), insecure = given.contains("--insecure")
            if hasIdentity == insecure {
                problems.append("give either --certs and --node, or --insecure")
            }
        }
        let duplicates = Dictionary(grouping: flags.map(\.name), by: { $0 }).filter { $0.value.count > 1 }.keys
        for flag in duplicates.sorted() { problems.append("\(flag) given more than once") }
        guard problems.isEmpty else {
            return .failure(.init("\(source): `\(words.joined(separator: " "))`: " + problems.joined(separator: "; ")))
        }
        return .success(Invocation(source: source, subcommand: name, flags: flags))
    }
}
