@testable import Inference

/// Test helpers that write and read whole token positions of a sequence through the raw block pointers,
/// the way the engine's attention does.
extension PagedKVCache {
    /// The value stored for (layer, head, element) of token `position` in an f32 cache filled by `fill`.
    static func pattern(_ tag: Float, layer: Int, head: Int, element: Int, isValue: Bool) -> Float {
        tag * 10_000 + Float(layer * 1000 + head * 100 + element) + (isValue ? 0.5 : 0)
    }

    /// Writes `pattern(tag, ...)` into every K and V element of `position` (f32 caches only).
    func fill(_ seq: SequenceID, position: Int, tag: Float) throws {
        let table = try blockTable(seq)
        let block = table[position / layout.blockSize]
        let slot = position % layout.blockSize
        for layer in 0..<layout.layers {
            let slice = layerBlock(layer: layer, block: block).assumingMemoryBound(to: Float.self)
            for head in 0..<layout.kvHeads {
                let offset = layout.headVectorOffset(kvHead: head, slot: slot)
                for element in 0..<layout.headDim {
                    slice[offset + element] = Self.pattern(tag, layer: layer, head: head, element: element, isValue: false)
                    slice[layout.valueOffsetElements + offset + element] =
                        Self.pattern(tag, layer: layer, head: head, element: element, isValue: true)
                }
            }
        }
    }

    /// Whether every K and V element of `position` holds `pattern(tag, ...)` (f32 caches only).
    func holds(_ seq: SequenceID, position: Int, tag: Float) throws -> Bool {
        let table = try blockTable(seq)
        let block = table[position / layout.blockSize]
        let slot = position % layout.blockSize
        for layer in 0..<layout.layers {
            let slice = layerBlock(layer: layer, block: block).assumingMemoryBound(to: Float.self)
            for head in 0..<layout.kvHeads {
                let offset = layout.headVectorOffset(kvHead: head, slot: slot)
                for element in 0..<layout.headDim {
                    if slice[offset + element] != Self.pattern(tag, layer: layer, head: head, element: element, isValue: false) { return false }
                    if slice[layout.valueOffsetElements + offset + element]
                        != Self.pattern(tag, layer: layer, head: head, element: element, isValue: true) { return false }
                }
            }
        }
        return true
    }

    /// Appends `count` tokens and fills each new position with tag `firstTag + i`.
    func appendFilled(_ seq: SequenceID, count: Int, firstTag: Float) throws {
        let start = try append(seq, count: count)
        for offset in 0..<count { try fill(seq, position: start + offset, tag: firstTag + Float(offset)) }
    }

    /// Sum of all blocks' reference counts.
    var totalReferences: Int { (0..<Int32(blockCount)).reduce(0) { $0 + referenceCount(ofBlock: $1) } }
}

extension KVCacheLayout {
    /// A small f32 layout whose values are easy to check.
    static func smallF32(blockSize: Int = 4) -> KVCacheLayout {
        KVCacheLayout(layers: 3, kvHeads: 2, headDim: 8, blockSize: blockSize, dataType: .f32, modelFingerprint: "test-model")
    }
}

/// Runs `body` and returns the InferenceError it throws, or nil if it throws nothing.
func thrownInferenceError(_ body: () throws -> Void) -> InferenceError? {
    do {
        try body()
        return nil
    } catch let error as InferenceError {
        return error
    } catch {
        return InferenceError(.init("unexpected error type"), "\(error)")
    }
}
