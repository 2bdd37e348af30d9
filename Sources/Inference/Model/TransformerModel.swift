import GGUF
import Synchronization

/// A loaded decoder-only transformer of one of the architectures in `ModelConfiguration.Architecture`: the
/// mapped file, its validated configuration, its tensor views and a fingerprint.
///
/// Immutable and shareable between engines. The weight views point into `file`, which lives exactly as long as
/// this object.
public final class TransformerModel: Sendable {
    /// Architectures this build can run (`general.architecture` values).
    public static var supportedArchitectures: [String] { ModelConfiguration.Architecture.allCases.map(\.rawValue) }

    public let file: GGUFFile
    public let configuration: ModelConfiguration
    public let weights: ModelWeights
    /// Stable identity of the weights (architecture, hyperparameters, tensor names/types/shapes, sampled weight
    /// bytes). KV caches are stamped with it so a cache made by one model is never imported by another.
    public let fingerprint: String
    /// The decode path's interleaved weight copies, made by the first decode engine and shared by the rest.
    private let interleaved = Mutex<InterleavedWeights?>(nil)

    /// The decode path's interleaved weight copies (made on first use; a prefill-only process never makes them).
    public var interleavedWeights: InterleavedWeights {
        interleaved.withLock { cached in
            if let cached { return cached }
            let made = InterleavedWeights(weights, fileMapped: file.isFileMapped)
            cached = made
            return made
        }
    }

    /// Validates the metadata and maps every tensor; no weight data is copied.
    public init(file: GGUFFile) throws(InferenceError) {
        let configuration = try ModelConfiguration(gguf: file)
        self.file = file
        self.configuration = configuration
        self.weights = try ModelWeights(gguf: file, configuration: configuration)
        self.fingerprint = Self.fingerprint(file: file, configuration: configuration)
    }

    /// Opens and maps the GGUF file at `path`.
    public convenience init(path: String) throws(InferenceError) {
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch {
            throw InferenceError(.invalidModel, "cannot open model \(path)", cause: error)
        }
        try self.init(file: file)
    }

    /// The KV cache layout this model's engines write: one K and one V row of `headDimension` per KV head.
    public func kvCacheLayout(blockSize: Int = 16, dataType: KVDataType = .f16) -> KVCacheLayout {
        KVCacheLayout(
            layers: configuration.layerCount, kvHeads: configuration.kvHeadCount,
            headDim: configuration.headDimension, blockSize: blockSize, dataType: dataType,
            modelFingerprint: fingerprint)
    }

    /// FNV-1a (64-bit) over a canonical description plus up to 64 bytes at the start, middle and end of every
    /// tensor: cheap (touches three pages per tensor) and different for any re-quantization or fine-tune.
    static func fingerprint(file: GGUFFile, configuration c: ModelConfiguration) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        mix(
            "\(c.architecture)|\(c.layerCount)|\(c.embeddingLength)|\(c.feedForwardLength)|\(c.headCount)|"
                .utf8)
        mix(
            "\(c.kvHeadCount)|\(c.ropeDimensionCount)|\(c.ropeFrequencyBase)|\(c.ropeScaling)|\(c.rmsNormEpsilon)|\(c.vocabularySize)"
                .utf8)
        // Only for the architectures that have them, so a Llama model keeps the fingerprint it always had.
        if c.headDimension * c.headCount != c.embeddingLength { mix("|hd\(c.headDimension)".utf8) }
        if let window = c.slidingWindow {
            mix("|swa\(window):\(c.slidingWindowLayers.map { $0 ? "1" : "0" }.joined()):\(c.slidingWindowRopeBase)".utf8)
        }
        if let cap = c.finalLogitSoftcapping { mix("|softcap\(cap)".utf8) }
        for tensor in file.tensors {
            mix("|\(tensor.name):\(tensor.type.name):\(tensor.dimensions)".utf8)
            file.withTensorData(tensor) { bytes in
                let sample = min(64, bytes.count)
                for start in [0, (bytes.count - sample) / 2, bytes.count - sample] {
                    mix(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + sample)]))
                }
            }
        }
        let hex = String(hash, radix: 16)
        return c.architecture + "-" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}
