import ArgumentParser

/// The `baton` command: a thin shell that parses arguments, builds services from the library modules and runs them.
@main
struct Baton: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "Prefill/decode disaggregated LLM serving for your own mismatched boxes.",
        subcommands: [
            InspectCommand.self,
            TokenizeCommand.self,
            DetokenizeCommand.self,
            GenerateCommand.self,
            ChatCommand.self,
            UpCommand.self,
            RouterCommand.self,
            ServeCommand.self,
            BenchCommand.self,
            PlacementCommand.self,
            ClusterCommand.self,
            WorkerCommand.self,
            CertsCommand.self,
            KVHandoffCommand.self,
        ]
    )
}

/// `baton bench …`: reported figures, never pass/fail thresholds.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: model speed, tokenizer speed, KV hand-off, serving under load.",
        subcommands: [BenchModelCommand.self, BenchTokenizeCommand.self, BenchKVCommand.self, BenchServeCommand.self]
    )
}
