import Inference
import KVTransport
import Tokenization

extension KVCompatibilityIdentity {
    /// The identity of a worker serving `model` with `tokenizer` and a KV cache laid out as `layout`: two
    /// workers may exchange KV only when these agree.
    public init(model: TransformerModel, tokenizer: Tokenizer, layout: KVCacheLayout) {
        self.init(
            architecture: model.configuration.architecture,
            modelFingerprint: layout.modelFingerprint.isEmpty ? model.fingerprint : layout.modelFingerprint,
            tokenizerHash: Self.tokenizerHash(tokenizer), layers: layout.layers, kvHeads: layout.kvHeads,
            headDim: layout.headDim, elementType: layout.dataType == .f16 ? .f16 : .f32, blockSize: layout.blockSize)
    }

    /// Whether KV of this identity fits a cache laid out as `layout` (shape and element width).
    public func describes(_ layout: KVCacheLayout) -> Bool {
        layers == layout.layers && kvHeads == layout.kvHeads && headDim == layout.headDim
            && blockSize == layout.blockSize && elementType.byteWidth == layout.dataType.byteWidth
    }

    /// FNV-1a (64-bit) over every vocabulary entry's bytes and the special ids, in hex: two tokenizers with the same
    /// hash map text to the same ids.
    public static func tokenizerHash(_ tokenizer: Tokenizer) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        func mixInteger(_ value: Int64) { for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: value >> shift)) } }
        mixInteger(Int64(tokenizer.vocabularySize))
        for id in 0..<tokenizer.vocabularySize {
            for byte in tokenizer.tokenText(Int32(id)).utf8 { mix(byte) }
            mix(UInt8(0xFF))  // never a UTF-8 byte: separates entries
        }
        mixInteger(Int64(tokenizer.bosID ?? -1))
        mixInteger(Int64(tokenizer.eosID ?? -1))
        mix(UInt8(tokenizer.addBOS ? 1 : 0))
        return "fnv1a64-" + String(hash, radix: 16)
    }
}
