/// Where one tensor lives in a GGUF file and how to read it. Validated at load: dimensions positive, the
/// data range inside the file, aligned, and disjoint from every other tensor's.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dimensions[0]` (ne0) is the contiguous row length; 1 to 4 entries.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    /// Bytes of data: `rowCount * rowLength / type.blockElements * type.blockBytes`.
    public let byteCount: Int

    /// Builds an info without validation (the reader validates what it builds; tests build their own).
    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int, byteCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }

    /// Number of elements: the product of all dimensions.
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Elements per row: `dimensions[0]`.
    public var rowLength: Int { dimensions[0] }
    /// Number of rows: the product of `dimensions[1...]` (1 for a vector).
    public var rowCount: Int { dimensions.dropFirst().reduce(1, *) }
}
