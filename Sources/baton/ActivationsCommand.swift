import ArgumentParser
import Foundation
import GGUF
import Inference
import Tokenization

/// `baton activations`: the intermediate tensors of a forward pass, to compare Baton with llama.cpp op by op.
struct ActivationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activations",
        abstract: "Write the intermediate tensors of a forward pass over some tokens to a JSON file.",
        discussion: """
            Tensors are named as in llama.cpp's graph of the model's architecture: for llama inp_embd, then per \
            layer L attn_norm-L, Qcur-L and Kcur-L (after RoPE), Vcur-L, kqv_out-L, attn_out-L, ffn_inp-L, \
            ffn_norm-L, ffn_swiglu-L, ffn_out-L, l_out-L, then result_norm and result_output (the logits); qwen3 \
            adds Qcur_normed-L and Kcur_normed-L, gemma3 has inp_scaled, attn_post_norm-L, sa_out-L, ffn_geglu-L \
            and ffn_post_norm-L. Each holds the last token's row. The file is {"tokens": [...], "path": "decode", \
            "names": [graph order], "tensors": {"name": [floats], ...}}. \
            Deploy/scripts/compare_activations.py runs this and llama.cpp on the same tokens and shows where \
            the two part.
            """
    )

    enum EnginePath: String, ExpressibleByArgument, CaseIterable {
        case decode, prefill
    }

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .long, help: "Token ids, comma-separated.")
    var tokens: String?

    @Option(name: .long, help: "Text to tokenize without a template, instead of --tokens.")
    var prompt: String?

    @Option(name: .long, help: "decode: one token per pass (as llama.cpp with n_batch 1); prefill: the whole prompt in one pass (sgemm).")
    var path: EnginePath = .decode

    @Option(name: .long, help: "Worker threads.")
    var threads: Int = 1

    @Option(name: .long, help: "The JSON file to write.")
    var output: String

    func validate() throws {
        guard (tokens == nil) != (prompt == nil) else { throw ValidationError("give exactly one of --tokens and --prompt") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() async throws {
        let modelPath = try modelOptions.resolvedPath()
        let ids: [Int32]
        if let tokens {
            do { ids = try DetokenizeCommand.parseIDs([tokens]) } catch { throw ValidationError("--tokens: \(error)") }
        } else {
            ids = try TokenizeCommand.loadTokenizer(modelOptions, command: "activations")
                .encode(prompt ?? "", addSpecial: true, parseSpecial: false)
        }
        guard !ids.isEmpty else { throw ValidationError("no tokens to run") }
        do {
            let model = try TransformerModel(file: GGUFFile(path: modelPath))
            let layout = model.kvCacheLayout()
            let cache = try PagedKVCache(layout: layout, blockCount: (ids.count + layout.blockSize - 1) / layout.blockSize + 1)
            let sequence = cache.createSequence()
            var tensors: [String: [Double]] = [:]
            var names: [String] = []
            // Every pass overwrites the previous one's tensors: the file holds the last token's.
            let observer: ActivationObserver = {
                if tensors.updateValue($0.row($0.rows - 1).map(Double.init), forKey: $0.name) == nil { names.append($0.name) }
            }
            switch path {
            case .decode:
                let engine = try DecodeEngine(model: model, cache: cache, threads: threads, maxBatch: 1, maxContext: ids.count)
                engine.activationObserver = observer
                _ = try engine.ingest(ids, sequence: sequence)
            case .prefill:
                let engine = try PrefillEngine(model: model, cache: cache, threads: threads, maxContext: ids.count)
                engine.activationObserver = observer
                _ = try engine.prefill(ids, sequence: sequence)
            }
            let document: [String: Any] = [
                "tokens": ids.map(Int.init), "path": path.rawValue, "names": names, "tensors": tensors,
            ]
            try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]).write(to: URL(fileURLWithPath: output))
            GenerateCommand.log("wrote \(tensors.count) tensors of the last of \(ids.count) tokens to \(output)")
        } catch {
            FileHandle.standardError.write(Data("baton activations: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
