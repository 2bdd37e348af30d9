#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A parsed GGUF model file: metadata and tensor infos, with the tensor data lent on demand.
///
/// Immutable after init; the file mapping lives exactly as long as the object. `init(path:)` maps the file
/// read-only (`mmap`); no tensor data is copied at load or when lent. Safe to share between threads.
///
/// ## The format
///
/// GGUF versions 2 and 3, as this reader parses it (ggml's `gguf.h` / `docs/gguf.md`).
/// Every integer and float is little-endian; nothing is aligned until the tensor data section.
///
/// ```
///   offset  size  field
///   0       4     magic "GGUF" (0x47 0x47 0x55 0x46)
///   4       4     u32 version: 2 or 3 (v1 used u32 counts and is refused; v3 only added big-endian
///                 files, which are refused too — they show up as a byte-swapped version)
///   8       8     u64 tensor_count
///   16      8     u64 metadata_kv_count
///   24      …     metadata_kv_count key/value pairs:
///                   string key            (u64 byte length, then that many UTF-8 bytes, no terminator)
///                   u32    value_type
///                   value                 by type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32,
///                                         7 bool (one byte, 0 or 1), 8 string, 9 array, 10 u64, 11 i64,
///                                         12 f64; an array is u32 element_type, u64 count, then count
///                                         values of that type (arrays of arrays nest)
///           …     tensor_count tensor infos:
///                   string name
///                   u32    n_dims         1...4
///                   u64    dims[n_dims]   ne0 first: ne0 is the contiguous row length
///                   u32    ggml_type      see GGMLType (block layouts are documented there)
///                   u64    offset         relative to the start of the data section; a multiple of alignment
///           …     padding to a multiple of `alignment` (metadata "general.alignment", default 32,
///                 a nonzero power of two)
///   data    …     tensor data; tensor i occupies data + offset_i ..< data + offset_i + byte size, where
///                 byte size = element count / block elements * block bytes
/// ```
///
/// Validation: every read is bounds-checked; every count or length is compared with the bytes left in the
/// file before anything is allocated for it, and metadata arrays hold at most 2^24 elements in all (so
/// memory stays bounded whatever the file claims); all size arithmetic is overflow-checked; tensor data
/// ranges must lie inside the file, be aligned and not overlap.
/// Each failure is a GGUFError naming the file and the byte offset of the field at fault.
public final class GGUFFile: @unchecked Sendable {
    /// The path, or the name given to `init(bytes:name:)`; used in error messages.
    public let name: String
    /// GGUF format version: 2 or 3.
    public let version: UInt32
    /// Alignment of the tensor data section and of every tensor's data, in bytes.
    public let alignment: Int
    /// Size of the whole file in bytes.
    public let fileSize: Int
    /// Absolute byte offset of the tensor data section (every tensor's data lies at or after it).
    public let dataOffset: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]

    private let storage: Storage
    private let tensorIndex: [String: Int]

    private enum Storage {
        /// A read-only mapping that this object owns and unmaps in `deinit`; empty files have no mapping.
        case mapped(UnsafeRawBufferPointer)
        case bytes([UInt8])
    }

    /// Maps the file at `path` read-only and parses its header. Throws `.fileNotFound`, `.io`, or a parse
    /// error naming the byte offset.
    public convenience init(path: String) throws(GGUFError) {
        let region = try Self.map(path: path)
        try self.init(mapping: region, name: path)
    }

    /// Whether tensor data lives in a read-only mapping of the file (`init(path:)`), whose pages can be dropped
    /// and fault back in from the file, rather than in memory (`init(bytes:name:)`).
    public var isFileMapped: Bool {
        if case .mapped = storage { return true }
        return false
    }

    /// Parses a GGUF image held in memory (tests, fuzzing). `name` is used in error messages.
    public init(bytes: [UInt8], name: String) throws(GGUFError) {
        let parsed = bytes.withUnsafeBytes { buffer in
            Result { () throws(GGUFError) -> GGUFHeader in try GGUFParser.parse(buffer, name: name) }
        }
        let header = try parsed.get()
        storage = .bytes(bytes)
        self.name = name
        fileSize = bytes.count
        version = header.version
        alignment = header.alignment
        dataOffset = header.dataOffset
        metadataKeys = header.metadataKeys
        metadata = header.metadata
        tensors = header.tensors
        tensorIndex = header.tensorIndex
    }

    private init(mapping: UnsafeRawBufferPointer, name: String) throws(GGUFError) {
        let header: GGUFHeader
        do throws(GGUFError) {
            header = try GGUFParser.parse(mapping, name: name)
        } catch {
            Self.unmap(mapping)
            throw error
        }
        storage = .mapped(mapping)
        self.name = name
        fileSize = mapping.count
        version = header.version
        alignment = header.alignment
        dataOffset = header.dataOffset
        metadataKeys = header.metadataKeys
        metadata = header.metadata
        tensors = header.tensors
        tensorIndex = header.tensorIndex
    }

    deinit {
        if case .mapped(let region) = storage { Self.unmap(region) }
    }

    /// The info of the tensor called `named`, or nil.
    public func tensor(named: String) -> GGUFTensorInfo? {
        tensorIndex[named].map { tensors[$0] }
    }

    /// Lends the tensor's bytes (`tensor.byteCount` of them, laid out as `tensor.type` documents); do not
    /// let the pointer escape `body`. `tensor` must come from this file.
    public func withTensorData<R>(
        _ tensor: GGUFTensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        precondition(
            tensor.offset >= 0 && tensor.byteCount >= 0 && tensor.offset <= fileSize - tensor.byteCount,
            "tensor \(tensor.name) does not lie inside \(name)"
        )
        let range = tensor.offset ..< tensor.offset + tensor.byteCount
        switch storage {
        case .mapped(let region):
            return try body(UnsafeRawBufferPointer(rebasing: region[range]))
        case .bytes(let bytes):
            return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        }
    }

    private static func map(path: String) throws(GGUFError) -> UnsafeRawBufferPointer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw GGUFError(.fileNotFound, "file not found: \(path)") }
            throw GGUFError(.io, "cannot open \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw GGUFError(.io, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw GGUFError(.io, "\(path) is not a regular file")
        }
        let size = Int(info.st_size)
        // mmap refuses zero-length mappings; an empty file is parsed (and rejected) without one.
        guard size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              base != UnsafeMutableRawPointer(bitPattern: -1)
        else {
            throw GGUFError(.io, "cannot map \(path): \(String(cString: strerror(errno)))")
        }
        return UnsafeRawBufferPointer(start: base, count: size)
    }

    private static func unmap(_ region: UnsafeRawBufferPointer) {
        guard let base = region.baseAddress else { return }
        munmap(UnsafeMutableRawPointer(mutating: base), region.count)
    }
}
