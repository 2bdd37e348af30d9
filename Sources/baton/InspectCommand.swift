import ArgumentParser
import Foundation
import GGUF
import Inference

/// `baton inspect`: what a GGUF model is — architecture, hyperparameters, tensor types, tokenizer, size — and which
/// kernels this machine would run it with.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a model's architecture, hyperparameters, tensor types, tokenizer and size, and the kernels in use.",
        discussion: """
            The kernels line says which instruction-set level the compute kernels run (the CPU's best, or the one \
            the BATON_ISA environment variable forces: auto, scalar, avx2, avx512 on x86-64; auto, scalar, neon, \
            neon-dotprod on arm64) and which CPU kernels OpenBLAS picked for prefill (OPENBLAS_CORETYPE sets those).
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Print one JSON object (snake_case keys) instead of text.")
    var json = false

    func run() async throws {
        let path = try modelOptions.resolvedPath()
        let report: InspectReport
        do {
            report = try InspectReport(file: GGUFFile(path: path), kernels: Kernels.selection)
        } catch {
            FileHandle.standardError.write(Data("baton inspect: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
    }
}

/// Everything `baton inspect` shows, read once from the file. Absent keys are nil (null in JSON).
struct InspectReport: Encodable {
    struct Hyperparameters: Encodable {
        var layers: Int?
        var embeddingLength: Int?
        var feedForwardLength: Int?
        var headCount: Int?
        var headCountKV: Int?
        var contextLength: Int?
        var ropeFreqBase: Float?
        var normEpsilon: Float?
        var vocabularySize: Int?

        enum CodingKeys: String, CodingKey {
            case layers, embeddingLength = "embedding_length", feedForwardLength = "feed_forward_length"
            case headCount = "head_count", headCountKV = "head_count_kv", contextLength = "context_length"
            case ropeFreqBase = "rope_freq_base", normEpsilon = "norm_epsilon", vocabularySize = "vocabulary_size"
        }

        // Always emit every key, as null when absent, so the JSON shape is stable.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(layers, forKey: .layers)
            try c.encode(embeddingLength, forKey: .embeddingLength)
            try c.encode(feedForwardLength, forKey: .feedForwardLength)
            try c.encode(headCount, forKey: .headCount)
            try c.encode(headCountKV, forKey: .headCountKV)
            try c.encode(contextLength, forKey: .contextLength)
            try c.encode(ropeFreqBase, forKey: .ropeFreqBase)
            try c.encode(normEpsilon, forKey: .normEpsilon)
            try c.encode(vocabularySize, forKey: .vocabularySize)
        }
    }

    var file: String
    var ggufVersion: UInt32
    var name: String?
    var architecture: String?
    var hyperparameters: Hyperparameters
    var tensorCount: Int
    /// Tensor count per ggml type name ("Q4_1", "F32", ...).
    var tensorTypes: [String: Int]
    /// Types of this file that Baton's kernels cannot compute with (ggml names, sorted); empty when it can run.
    var unsupportedTensorTypes: [String]
    var tokenizerModel: String?
    var preTokenizer: String?
    var hasChatTemplate: Bool
    var fileBytes: Int
    var tensorBytes: Int
    var parameterCount: Int
    var kernels: KernelsReport

    enum CodingKeys: String, CodingKey {
        case file, ggufVersion = "gguf_version", name, architecture, hyperparameters
        case tensorCount = "tensor_count", tensorTypes = "tensor_types", tokenizerModel = "tokenizer_model"
        case unsupportedTensorTypes = "unsupported_tensor_types"
        case preTokenizer = "pre_tokenizer", hasChatTemplate = "has_chat_template", fileBytes = "file_bytes"
        case tensorBytes = "tensor_bytes", parameterCount = "parameter_count", kernels
    }

    /// The compute path this machine runs (``Kernels/Selection``), encoded with snake_case keys.
    struct KernelsReport: Encodable {
        let selection: Kernels.Selection

        enum CodingKeys: String, CodingKey { case isa, cpuISA = "cpu_isa", forced, blasCore = "blas_core" }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(selection.isa, forKey: .isa)
            try c.encode(selection.cpu, forKey: .cpuISA)
            try c.encode(selection.forced, forKey: .forced)
            try c.encode(selection.blasCore, forKey: .blasCore)
        }
    }

    init(file: GGUFFile, kernels: Kernels.Selection) throws(GGUFError) {
        self.kernels = KernelsReport(selection: kernels)
        self.file = file.name
        ggufVersion = file.version
        name = try file.optionalString("general.name")
        let arch = try file.optionalString("general.architecture")
        architecture = arch
        // Hyperparameter keys are namespaced by architecture: "llama.block_count", "qwen2.block_count"...
        let prefix = (arch ?? "") + "."
        let vocabulary: Int?
        if let size = try file.optionalInteger(prefix + "vocab_size") {
            vocabulary = size
        } else if case .array(let tokens) = file.metadata["tokenizer.ggml.tokens"] {
            vocabulary = tokens.count
        } else {
            vocabulary = nil
        }
        var epsilon = try file.optionalFloat(prefix + "attention.layer_norm_rms_epsilon")
        if epsilon == nil { epsilon = try file.optionalFloat(prefix + "attention.layer_norm_epsilon") }
        hyperparameters = Hyperparameters(
            layers: try file.optionalInteger(prefix + "block_count"),
            embeddingLength: try file.optionalInteger(prefix + "embedding_length"),
            feedForwardLength: try file.optionalInteger(prefix + "feed_forward_length"),
            headCount: try file.optionalInteger(prefix + "attention.head_count"),
            headCountKV: try file.optionalInteger(prefix + "attention.head_count_kv"),
            contextLength: try file.optionalInteger(prefix + "context_length"),
            ropeFreqBase: try file.optionalFloat(prefix + "rope.freq_base"),
            normEpsilon: epsilon,
            vocabularySize: vocabulary
        )
        tensorCount = file.tensors.count
        var histogram: [String: Int] = [:]
        var bytes = 0, parameters = 0
        for tensor in file.tensors {
            histogram[tensor.type.name, default: 0] += 1
            bytes += tensor.byteCount
            parameters += tensor.elementCount
        }
        tensorTypes = histogram
        unsupportedTensorTypes = Set(file.tensors.map(\.type).filter { !$0.isSupported }).map(\.name).sorted()
        tokenizerModel = try file.optionalString("tokenizer.ggml.model")
        preTokenizer = try file.optionalString("tokenizer.ggml.pre")
        hasChatTemplate = file.contains("tokenizer.chat_template")
        fileBytes = file.fileSize
        tensorBytes = bytes
        parameterCount = parameters
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(ggufVersion, forKey: .ggufVersion)
        try c.encode(name, forKey: .name)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(hyperparameters, forKey: .hyperparameters)
        try c.encode(tensorCount, forKey: .tensorCount)
        try c.encode(tensorTypes, forKey: .tensorTypes)
        try c.encode(unsupportedTensorTypes, forKey: .unsupportedTensorTypes)
        try c.encode(tokenizerModel, forKey: .tokenizerModel)
        try c.encode(preTokenizer, forKey: .preTokenizer)
        try c.encode(hasChatTemplate, forKey: .hasChatTemplate)
        try c.encode(fileBytes, forKey: .fileBytes)
        try c.encode(tensorBytes, forKey: .tensorBytes)
        try c.encode(parameterCount, forKey: .parameterCount)
        try c.encode(kernels, forKey: .kernels)
    }

    /// The human-readable report: one "label  value" line per fact.
    var text: String {
        func show<T>(_ value: T?) -> String { value.map { "\($0)" } ?? "-" }
        let h = hyperparameters
        let types = tensorTypes.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let tokenizer = tokenizerModel.map { model in preTokenizer.map { "\(model) (pre-tokenizer \($0))" } ?? model }
        let rows: [(String, String)] = [
            ("file", file),
            ("format", "GGUF v\(ggufVersion), \(tensorCount) tensors"),
            ("name", show(name)),
            ("architecture", show(architecture)),
            ("layers", show(h.layers)),
            ("embedding", show(h.embeddingLength)),
            ("FFN", show(h.feedForwardLength)),
            ("heads", show(h.headCount)),
            ("KV heads", show(h.headCountKV)),
            ("context length", show(h.contextLength)),
            ("RoPE base", show(h.ropeFreqBase)),
            ("norm epsilon", show(h.normEpsilon)),
            ("vocabulary", show(h.vocabularySize)),
            ("tensor types", types.isEmpty ? "-" : types),
            ("kernels", unsupportedTensorTypes.isEmpty ? "every tensor type supported" : Self.unsupportedNote(unsupportedTensorTypes)),
            ("tokenizer", show(tokenizer)),
            ("chat template", hasChatTemplate
                ? "present"
                : "absent (a base model: chat needs --chat-template FILE; raw prompts and /v1/completions work)"),
            ("size", "\(fileBytes) bytes (\(Self.megabytes(fileBytes)) MB), "
                + "\(parameterCount) parameters (\(Self.millions(parameterCount)) M)"),
            ("kernels", "\(kernels.selection)"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width + 2, withPad: " ", startingAt: 0) + $0.1 }
            .joined(separator: "\n")
    }

    /// Which commands cannot use a file with tensor types Baton has no kernels for, and which still can.
    static func unsupportedNote(_ types: [String]) -> String {
        "no kernels for \(types.joined(separator: ", ")): generate, chat, serve, up, worker, activations and bench model "
            + "cannot load this file (inspect, tokenize and detokenize can)"
    }

    private static func megabytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1e6) }
    private static func millions(_ count: Int) -> String { String(format: "%.1f", Double(count) / 1e6) }
}
