import Testing
@testable import Inference

@Suite("KV cache export and import")
struct KVTransferTests {
    static let layout = KVCacheLayout(layers: 4, kvHeads: 3, headDim: 64, blockSize: 16, dataType: .f16, modelFingerprint: "smollm2-135m:abc123")

    /// Fills every position of `seq` in every layer with pseudo-random f16 values.
    static func randomize(_ cache: PagedKVCache, _ seq: SequenceID, seed: UInt64) throws {
        var rng = Xoshiro256StarStar(seed: seed)
        for layer in 0..<cache.layout.layers {
            for block in try cache.blockTable(seq) {
                let slice = cache.layerBlock(layer: layer, block: block).assumingMemoryBound(to: Float16.self)
                for index in 0..<cache.layout.layerBlockElements {
                    slice[index] = Float16(Float(Int64(rng.next() % 20_001) - 10_000) / 1000)
                }
            }
        }
    }

    @Test("a sequence exported from one cache and imported into another is bit-exact, layer by layer")
    func roundTrip() throws {
        let source = try PagedKVCache(layout: Self.layout, blockCount: 16)
        // Interleave two sequences so the exported one's blocks are not consecutive.
        let other = source.createSequence()
        let seq = source.createSequence()
        for _ in 0..<3 {
            try source.append(other, count: 16)
            try source.append(seq, count: 16)
        }
        try source.append(seq, count: 5)
        #expect(try source.blockTable(seq) == [1, 3, 5, 6])
        try Self.randomize(source, seq, seed: 42)

        let header = try source.descriptor(seq).encoded()
        let descriptor = try KVSequenceDescriptor(decoding: header)
        #expect(descriptor.tokenCount == 53)
        #expect(descriptor.layerByteCount == 4 * Self.layout.layerBlockBytes)

        let destination = try PagedKVCache(layout: Self.layout, blockCount: 10)
        let occupant = destination.createSequence()
        try destination.append(occupant, count: 20)
        let imported = try destination.importSequence(descriptor)
        #expect(try destination.tokenCount(imported) == 53)
        #expect(try destination.blockTable(imported).count == 4)
        for layer in 0..<Self.layout.layers {
            let bytes = try source.exportLayer(seq, layer: layer)
            #expect(bytes.count == descriptor.layerByteCount)
            try destination.importLayer(imported, layer: layer, bytes: bytes)
        }
        for layer in 0..<Self.layout.layers {
            #expect(try destination.exportLayer(imported, layer: layer) == source.exportLayer(seq, layer: layer))
            // And position by position through the block tables.
            for (sourceBlock, destinationBlock) in zip(try source.blockTable(seq), try destination.blockTable(imported)) {
                let a = UnsafeRawBufferPointer(start: source.layerBlock(layer: layer, block: sourceBlock), count: Self.layout.layerBlockBytes)
                let b = UnsafeRawBufferPointer(start: destination.layerBlock(layer: layer, block: destinationBlock), count: Self.layout.layerBlockBytes)
                #expect(a.elementsEqual(b))
            }
        }
        // The imported sequence behaves like any other: it can grow and be forked.
        #expect(try destination.append(imported, count: 1) == 53)
        #expect(try destination.fork(imported) != imported)
    }

    @Test("withExportedLayer lends the same bytes as exportLayer, consecutive blocks or not")
    func lentExport() throws {
        let cache = try PagedKVCache(layout: Self.layout, blockCount: 12)
        let consecutive = cache.createSequence()
        try cache.append(consecutive, count: 40)
        let a = cache.createSequence()
        let b = cache.createSequence()
        for _ in 0..<3 {
            try cache.append(a, count: 16)
            try cache.append(b, count: 16)
        }
        try Self.randomize(cache, consecutive, seed: 1)
        try Self.randomize(cache, a, seed: 2)
        for seq in [consecutive, a] {
            for layer in 0..<Self.layout.layers {
                let copied = try cache.exportLayer(seq, layer: layer)
                let lent = try cache.withExportedLayer(seq, layer: layer) { Array($0) }
                #expect(lent == copied)
            }
        }
        let empty = cache.createSequence()
        #expect(try cache.withExportedLayer(empty, layer: 0) { $0.count } == 0)
        #expect(try cache.exportLayer(empty, layer: 0).isEmpty)
    }

    @Test("importTarget names the destination of every block, matching importLayer")
    func zeroCopyTargets() throws {
        let source = try PagedKVCache(layout: Self.layout, blockCount: 8)
        let seq = source.createSequence()
        try source.append(seq, count: 33)
        try Self.randomize(source, seq, seed: 9)
        let destination = try PagedKVCache(layout: Self.layout, blockCount: 8)
        let imported = try destination.importSequence(try source.descriptor(seq))
        for layer in 0..<Self.layout.layers {
            let bytes = try source.exportLayer(seq, layer: layer)
            let targets = try destination.importTarget(imported, layer: layer)
            #expect(targets.map(\.block) == (try destination.blockTable(imported)))
            #expect(targets.map(\.byteOffset) == [0, 1, 2].map { $0 * Self.layout.layerBlockBytes })
            bytes.withUnsafeBytes { buffer in
                for target in targets {
                    target.pointer.copyMemory(from: buffer.baseAddress! + target.byteOffset, byteCount: target.byteCount)
                }
            }
            #expect(try destination.exportLayer(imported, layer: layer) == bytes)
        }
    }

    @Test("a receiver holding a cached prefix imports only the blocks after it, and ends with the sender's sequence")
    func importAfterCachedPrefix() throws {
        let source = try PagedKVCache(layout: Self.layout, blockCount: 8)
        let seq = source.createSequence()
        try source.append(seq, count: 40)
        try Self.randomize(source, seq, seed: 5)
        let tokens = (0..<40).map { Int32($0) }

        // The receiver holds the first two blocks from an earlier sequence, entered in its prefix index.
        let destination = try PagedKVCache(layout: Self.layout, blockCount: 8)
        let earlier = destination.createSequence()
        try destination.append(earlier, count: 32)
        for layer in 0..<Self.layout.layers {
            let bytes = try source.exportLayer(seq, layer: layer)
            try bytes.withUnsafeBytes { buffer in
                for target in try destination.importTarget(earlier, layer: layer) {
                    target.pointer.copyMemory(from: buffer.baseAddress! + target.byteOffset, byteCount: target.byteCount)
                }
            }
        }
        try destination.registerPrefix(earlier, tokens: Array(tokens[..<32])) { _ in 1 }
        destination.free(earlier)

        let arriving = destination.createSequence()
        let held = try destination.adoptPrefix(arriving, tokens: tokens, namespace: { _ in 1 }, limit: 39)
        #expect(held == 32)
        try destination.append(arriving, count: 40 - held)
        // The held blocks are shared with the index: importing over them is refused; from position 32 it is not.
        #expect(throws: InferenceError.self) { try destination.importTarget(arriving, layer: 0) }
        #expect(throws: InferenceError.self) { try destination.importTarget(arriving, layer: 0, from: 8) }
        for layer in 0..<Self.layout.layers {
            let part = try source.exportLayer(seq, layer: layer, from: held)
            #expect(part == Array(try source.exportLayer(seq, layer: layer).dropFirst(2 * Self.layout.layerBlockBytes)))
            let targets = try destination.importTarget(arriving, layer: layer, from: held)
            #expect(targets.map(\.block) == Array(try destination.blockTable(arriving)[2...]))
            #expect(targets.map(\.byteOffset) == [0])
            part.withUnsafeBytes { buffer in
                for target in targets {
                    target.pointer.copyMemory(from: buffer.baseAddress! + target.byteOffset, byteCount: target.byteCount)
                }
            }
            #expect(try destination.exportLayer(arriving, layer: layer) == (try source.exportLayer(seq, layer: layer)))
        }
        #expect(throws: InferenceError.self) { try source.exportLayer(seq, layer: 0, from: 48) }
    }

    @Test("importing into a cache with a different layout names the field and both values")
    func layoutMismatch() throws {
        let cache = try PagedKVCache(layout: Self.layout, blockCount: 4)
        var changes: [(KVCacheLayout, String)] = []
        var layout = Self.layout
        layout.layers = 5; changes.append((layout, "layers 5 into a cache with layers 4"))
        layout = Self.layout; layout.kvHeads = 2; changes.append((layout, "kvHeads 2 into a cache with kvHeads 3"))
        layout = Self.layout; layout.headDim = 32; changes.append((layout, "headDim 32 into a cache with headDim 64"))
        layout = Self.layout; layout.blockSize = 32; changes.append((layout, "blockSize 32 into a cache with blockSize 16"))
        layout = Self.layout; layout.dataType = .f32; changes.append((layout, "dataType f32 into a cache with dataType f16"))
        layout = Self.layout; layout.modelFingerprint = "other"
        changes.append((layout, "modelFingerprint \"other\" into a cache with modelFingerprint \"smollm2-135m:abc123\""))
        for (layout, expected) in changes {
            let error = thrownInferenceError { _ = try cache.importSequence(KVSequenceDescriptor(layout: layout, tokenCount: 3)) }
            #expect(error?.code == .layoutMismatch)
            #expect(error?.message == "cannot import a KV sequence with \(expected)")
        }
        #expect(cache.freeBlockCount == 4)
        #expect(cache.sequenceCount == 0)
    }

    @Test("imports with the wrong byte count, a bad layer, no room or a shared target are refused")
    func badImports() throws {
        let cache = try PagedKVCache(layout: Self.layout, blockCount: 4)
        let seq = try cache.importSequence(KVSequenceDescriptor(layout: Self.layout, tokenCount: 17))
        let short = thrownInferenceError { try cache.importLayer(seq, layer: 0, bytes: [UInt8](repeating: 1, count: 100)) }
        #expect(short?.code == .invalidArgument)
        #expect(short?.message == "layer 0 import for \(seq) needs \(2 * Self.layout.layerBlockBytes) bytes (2 blocks × \(Self.layout.layerBlockBytes)), got 100")
        let wrongLayer = thrownInferenceError { try cache.importLayer(seq, layer: 4, bytes: []) }
        #expect(wrongLayer?.code == .invalidArgument)
        #expect(wrongLayer?.message.contains("layer 4") == true)
        #expect(thrownInferenceError { _ = try cache.exportLayer(seq, layer: -1) }?.code == .invalidArgument)

        let full = thrownInferenceError { _ = try cache.importSequence(KVSequenceDescriptor(layout: Self.layout, tokenCount: 48)) }
        #expect(full?.code == .kvCacheFull)
        #expect(cache.freeBlockCount == 2)
        #expect(cache.sequenceCount == 1)
        let negative = thrownInferenceError { _ = try cache.importSequence(KVSequenceDescriptor(layout: Self.layout, tokenCount: -1)) }
        #expect(negative?.code == .invalidArgument)

        let fork = try cache.fork(seq)
        let shared = thrownInferenceError { _ = try cache.importTarget(fork, layer: 0) }
        #expect(shared?.code == .invalidArgument)
        #expect(shared?.message.contains("shared with a fork") == true)
    }
}
