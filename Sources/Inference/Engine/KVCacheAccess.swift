import CKernels

/// Reads and writes one layer's keys and values of one sequence in a `PagedKVCache`, by token position.
///
/// Slice (layer, block) = K[kvHead][slot][headDim] then V[kvHead][slot][headDim]. Valid only for the current
/// step: block tables change when sequences grow.
struct KVCacheAccess {
    let cache: PagedKVCache
    let kvHeads: Int
    let headDim: Int
    let blockSize: Int
    let isF16: Bool

    init(cache: PagedKVCache) {
        self.cache = cache
        kvHeads = cache.layout.kvHeads
        headDim = cache.layout.headDim
        blockSize = cache.layout.blockSize
        isF16 = cache.layout.dataType == .f16
    }

    /// Element offset of (kvHead, slot) inside a layer-block slice; V rows start `valueOffset` later.
    @inline(__always) func offset(head: Int, slot: Int) -> Int { (head * blockSize + slot) * headDim }
    var valueOffset: Int { kvHeads * blockSize * headDim }

    @inline(__always)
    func slice(layer: Int, table: UnsafePointer<Int32>, position: Int) -> (UnsafeMutableRawPointer, slot: Int) {
        (cache.layerBlock(layer: layer, block: table[position / blockSize]), position % blockSize)
    }

    /// Stores one row's keys and values (`[kvHeads × headDim]` each) at `position`.
    func store(
        layer: Int, table: UnsafePointer<Int32>, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>
    ) {
        let (base, slot) = slice(layer: layer, table: table, position: position)
        for g in 0..<kvHeads {
            let k = offset(head: g, slot: slot), v = valueOffset + k
            if isF16 {
                let p = base.assumingMemoryBound(to: UInt16.self)
                Kernels.convertToF16(key + g * headDim, p + k, count: headDim)
                Kernels.convertToF16(value + g * headDim, p + v, count: headDim)
            } else {
                let p = base.assumingMemoryBound(to: Float.self)
                (p + k).update(from: key + g * headDim, count: headDim)
                (p + v).update(from: value + g * headDim, count: headDim)
            }
        }
    }

    /// Attention of one query group — `group` adjacent heads of `headDim` floats at `queries`, sharing KV head
    /// `head` — over positions `first..<count`, reading the cache in place: `output[group × headDim]` =
    /// softmax(scale · q·Kᵀ)·V. `scores` is scratch of `group × (count - first + blockSize)` floats.
    ///
    /// The kernels walk whole blocks, so a window that starts inside a block is scored from the block's start
    /// and the positions before `first` get probability 0.
    func attend(
        layer: Int, table: UnsafePointer<Int32>, head: Int, first: Int = 0, count: Int, queries: UnsafePointer<Float>,
        group: Int, scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    ) {
        let base = UnsafeRawPointer(cache.layerBase(layer))
        let width = isF16 ? 2 : 4, f16: Int32 = isF16 ? 1 : 0
        let keys = offset(head: head, slot: 0) * width, values = keys + valueOffset * width
        let blockBytes = cache.layout.layerBlockBytes
        let firstBlock = first / blockSize, skipped = first - firstBlock * blockSize
        let table = table + firstBlock, n = count - firstBlock * blockSize
        bk_attn_scores(
            Kernels.isa, f16, queries, Int32(group), Int32(headDim), scale, base, blockBytes, table, Int32(blockSize),
            keys, Int32(n), scores)
        for h in 0..<group {
            let row = scores + h * n
            VectorMath.softmax(row + skipped, count: n - skipped)
            if skipped > 0 { row.update(repeating: 0, count: skipped) }
        }
        bk_attn_values(
            Kernels.isa, f16, scores, Int32(group), Int32(headDim), base, blockBytes, table, Int32(blockSize), values,
            Int32(n), output)
    }

    /// Copies positions `from..<count` of KV head `head` to f32 at their positions: `keys[p × headDim]`,
    /// `values[p × headDim]` for p in `from..<count`.
    func gather(
        layer: Int, table: UnsafePointer<Int32>, head: Int, from: Int = 0, count: Int,
        keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>
    ) {
        var position = from
        while position < count {
            let base = cache.layerBlock(layer: layer, block: table[position / blockSize])
            let slot = position % blockSize
            let run = min(blockSize - slot, count - position)
            // Slots of one head are contiguous within a block.
            let k = offset(head: head, slot: slot), v = valueOffset + k
            if isF16 {
                let p = base.assumingMemoryBound(to: UInt16.self)
                Kernels.convertFromF16(p + k, keys + position * headDim, count: run * headDim)
                Kernels.convertFromF16(p + v, values + position * headDim, count: run * headDim)
            } else {
                let p = base.assumingMemoryBound(to: Float.self)
                (keys + position * headDim).update(from: p + k, count: run * headDim)
                (values + position * headDim).update(from: p + v, count: run * headDim)
            }
            position += run
        }
    }
}
