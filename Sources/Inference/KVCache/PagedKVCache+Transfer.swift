/// One destination block of a layer import, for receivers that write the bytes themselves (RDMA, shared
/// memory): `byteCount` bytes at `pointer` receive bytes `byteOffset..<byteOffset + byteCount` of the layer's
/// contiguous export.
public struct KVImportSlice: @unchecked Sendable, Equatable {
    /// The physical block the bytes land in.
    public let block: Int32
    /// Offset of these bytes within the layer's contiguous export.
    public let byteOffset: Int
    /// Where to write them (inside the cache's storage; valid for the cache's lifetime).
    public let pointer: UnsafeMutableRawPointer
    /// Always `layout.layerBlockBytes`.
    public let byteCount: Int
}

/// Export and import of one sequence, layer by layer: the seam between prefill and decode workers.
///
/// Sender: `descriptor(seq)`, then for each layer `exportLayer` / `withExportedLayer`.
/// Receiver: `importSequence(descriptor)` (checks the layout, allocates the blocks), then `importLayer` for
/// every layer (or writes through `importTarget`). The imported sequence's KV is unspecified until every layer
/// has been imported; after that it continues generation exactly as the original.
extension PagedKVCache {
    /// The header describing `seq` for export.
    public func descriptor(_ seq: SequenceID) throws(InferenceError) -> KVSequenceDescriptor {
        KVSequenceDescriptor(layout: layout, tokenCount: try state(seq).tokenCount)
    }

    /// Contiguous bytes of `layer` for the sequence: its blocks' (layer) slices in block-table order
    /// (`descriptor(seq).layerByteCount` bytes), from the block holding position `firstToken` (a multiple of the
    /// block size: a receiver that holds the positions before it) on. Always copies.
    public func exportLayer(_ seq: SequenceID, layer: Int, from firstToken: Int = 0) throws(InferenceError) -> [UInt8] {
        let blocks = try exportableBlocks(seq, layer: layer, from: firstToken)
        let sliceBytes = layout.layerBlockBytes
        return [UInt8](unsafeUninitializedCapacity: blocks.count * sliceBytes) { buffer, initialized in
            let destination = UnsafeMutableRawPointer(buffer.baseAddress)
            for (index, block) in blocks.enumerated() {
                destination?.advanced(by: index * sliceBytes)
                    .copyMemory(from: layerBlock(layer: layer, block: block), byteCount: sliceBytes)
            }
            initialized = blocks.count * sliceBytes
        }
    }

    /// Lends the contiguous bytes of `layer` for the sequence (same content as `exportLayer`) to `body`.
    /// Without a copy when the sequence's blocks are physically consecutive, through a temporary buffer
    /// otherwise. Do not let the pointer escape `body`, and do not modify the cache inside it.
    public func withExportedLayer<R>(
        _ seq: SequenceID, layer: Int, _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        let blocks = try exportableBlocks(seq, layer: layer)
        let sliceBytes = layout.layerBlockBytes
        let total = blocks.count * sliceBytes
        guard let first = blocks.first else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        let consecutive = blocks.indices.allSatisfy { blocks[$0] == first + Int32($0) }
        if consecutive {
            return try body(UnsafeRawBufferPointer(start: layerBlock(layer: layer, block: first), count: total))
        }
        return try withUnsafeTemporaryAllocation(byteCount: total, alignment: 64) { buffer in
            for (index, block) in blocks.enumerated() {
                buffer.baseAddress!.advanced(by: index * sliceBytes)
                    .copyMemory(from: layerBlock(layer: layer, block: block), byteCount: sliceBytes)
            }
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Where `layer`'s export lies, block by block in block-table order (the regions `exportLayer` gathers), for
    /// senders that read in place. The memory holds the sequence's KV while the sequence lives and nothing appends
    /// to, truncates or frees it: a sender must hold it still until the transfer ends.
    public func exportRegions(_ seq: SequenceID, layer: Int) throws(InferenceError) -> [UnsafeRawBufferPointer] {
        let sliceBytes = layout.layerBlockBytes
        return try exportableBlocks(seq, layer: layer).map { block in
            UnsafeRawBufferPointer(start: layerBlock(layer: layer, block: block), count: sliceBytes)
        }
    }

    /// Creates a sequence for an incoming export: checks the layout (`.layoutMismatch` naming the field and both
    /// values, `.invalidArgument` for a bad token count) and allocates its blocks (`.kvCacheFull` if the pool
    /// cannot). Import every layer next.
    public func importSequence(_ descriptor: KVSequenceDescriptor) throws(InferenceError) -> SequenceID {
        if let difference = layout.firstDifference(from: descriptor.layout) {
            throw InferenceError(
                .layoutMismatch,
                "cannot import a KV sequence with \(difference.field) \(difference.theirs) into a cache with \(difference.field) \(difference.mine)")
        }
        guard descriptor.tokenCount >= 0, descriptor.tokenCount <= KVSequenceDescriptor.maximumTokenCount else {
            throw InferenceError(
                .invalidArgument,
                "KV descriptor tokenCount must be in 0...\(KVSequenceDescriptor.maximumTokenCount), got \(descriptor.tokenCount)")
        }
        return try createSequence(tokenCount: descriptor.tokenCount)
    }

    /// Copies one layer's contiguous export (as produced by `exportLayer`) into the sequence's blocks.
    /// Throws `.invalidArgument` if the byte count is not `descriptor(seq).layerByteCount`, the layer is out of
    /// range, or the sequence shares blocks with a fork (importing would change the fork too).
    public func importLayer(_ seq: SequenceID, layer: Int, bytes: UnsafeRawBufferPointer) throws(InferenceError) {
        let targets = try importTarget(seq, layer: layer)
        let expected = targets.count * layout.layerBlockBytes
        guard bytes.count == expected else {
            throw InferenceError(
                .invalidArgument,
                "layer \(layer) import for \(seq) needs \(expected) bytes (\(targets.count) blocks × \(layout.layerBlockBytes)), got \(bytes.count)")
        }
        guard let source = bytes.baseAddress else { return }
        for target in targets {
            target.pointer.copyMemory(from: source + target.byteOffset, byteCount: target.byteCount)
        }
    }

    /// Convenience for `importLayer` from an array.
    public func importLayer(_ seq: SequenceID, layer: Int, bytes: [UInt8]) throws(InferenceError) {
        do {
            try bytes.withUnsafeBytes { buffer in try importLayer(seq, layer: layer, bytes: buffer) }
        } catch let error as InferenceError {
            throw error
        } catch {
            throw InferenceError(.invalidArgument, "layer import failed", cause: error)
        }
    }

    /// Where each block of `layer`'s export must be written, for zero-copy receivers (RDMA, shared memory):
    /// one entry per block in block-table order; writing the export's bytes `byteOffset..<byteOffset+byteCount`
    /// to each `pointer` is exactly what `importLayer` does. Same checks as `importLayer`. The pointers are valid
    /// while the sequence lives and is neither truncated nor freed.
    ///
    /// From `firstToken` (a multiple of the block size): only the blocks from the one holding it, offsets counted
    /// from there — the part of an export that starts at `firstToken`, for a sequence whose earlier blocks came
    /// from the prefix cache (those may be shared; the ones written must not be).
    public func importTarget(_ seq: SequenceID, layer: Int, from firstToken: Int = 0) throws(InferenceError) -> [KVImportSlice] {
        let blocks = try exportableBlocks(seq, layer: layer, from: firstToken)
        if let shared = blocks.first(where: { referenceCount(ofBlock: $0) > 1 || isIndexed($0) }) {
            throw InferenceError(
                .invalidArgument,
                "cannot import into \(seq): its block \(shared) is shared with a fork or the prefix cache; import into a fresh sequence from importSequence")
        }
        let sliceBytes = layout.layerBlockBytes
        return blocks.enumerated().map { index, block in
            KVImportSlice(
                block: block, byteOffset: index * sliceBytes, pointer: layerBlock(layer: layer, block: block),
                byteCount: sliceBytes)
        }
    }

    private func exportableBlocks(_ seq: SequenceID, layer: Int, from firstToken: Int = 0) throws(InferenceError) -> [Int32] {
        let sequence = try state(seq)
        try checkLayer(layer, seq)
        guard firstToken >= 0, firstToken <= sequence.tokenCount, firstToken % layout.blockSize == 0 else {
            throw InferenceError(
                .invalidArgument,
                "position \(firstToken) of \(seq) (\(sequence.tokenCount) tokens) does not start a block of \(layout.blockSize)")
        }
        return Array(sequence.blocks[(firstToken / layout.blockSize)...])
    }

    private func checkLayer(_ layer: Int, _ seq: SequenceID) throws(InferenceError) {
        guard layer >= 0, layer < layout.layers else {
            throw InferenceError(.invalidArgument, "layer \(layer) of \(seq) out of range 0..<\(layout.layers)")
        }
    }
}
