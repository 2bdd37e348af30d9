import ArgumentParser
import Inference
#if canImport(Glibc)
import Glibc
#endif

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
            TokenCommand.self,
            JoinCommand.self,
            KVHandoffCommand.self,
            ActivationsCommand.self,
            SimulateCommand.self,
        ]
    )

    static func main() async {
        keepFreedMemory()
        do {
            var command = try parseAsRoot()
            // A BATON_ISA the CPU cannot honour stops every command, rather than quietly running other kernels.
            try Kernels.checkSelection()
            if var asynchronous = command as? AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// glibc gives freed memory back to the kernel (large blocks are their own mappings, the heap top is trimmed
    /// past 128 KiB), so every KV hand-off's multi-megabyte frame and record buffers fault in and zero fresh
    /// pages: measured on the mutual-TLS hand-off of an 8k-token KV, 1.55–1.94 CPU s/GB and 0.95–1.25 GB/s as
    /// glibc ships, 1.30–1.52 CPU s/GB and 1.20–1.38 GB/s with freed memory kept for reuse. The price is that
    /// up to 256 MiB freed after a burst stays resident.
    static func keepFreedMemory() {
        #if canImport(Glibc)
        // <malloc.h> is not part of the Glibc module: look `mallopt` up; its option numbers are glibc's ABI.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let trimThreshold: Int32 = -1, mmapThreshold: Int32 = -3
        _ = mallopt(mmapThreshold, 32 << 20)  // glibc's largest allowed value
        _ = mallopt(trimThreshold, 256 << 20)
        #endif
    }
}

/// `baton bench …`: reported figures, never pass/fail thresholds.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: model speed, tokenizer speed, KV hand-off, serving under load.",
        subcommands: [BenchModelCommand.self, BenchTokenizeCommand.self, BenchKVCommand.self, BenchServeCommand.self]
    )
}
