#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A POSIX shared-memory object mapped into this process: the same-host data path. The receiver
/// `create`s it (sized for the whole transfer) and sends its name over the control stream; the sender
/// `open`s it and writes each layer in place, so KV reaches the receiver without crossing a socket.
///
/// The creator unlinks the name when the region is released (or earlier with `unlink()`); the mapping
/// stays valid until `release()` or deinit. Not thread-safe; lend `bytes` only inside closures.
final class SharedMemoryRegion: @unchecked Sendable {
    let name: String
    let byteCount: Int
    private let base: UnsafeMutableRawPointer
    private let ownsName: Bool
    private var unlinked = false
    private var released = false

    /// Creates and maps a new object `name` ("/baton-kv-…") of `byteCount` bytes; fails if it exists.
    static func create(name: String, byteCount: Int) throws(KVTransportError) -> SharedMemoryRegion {
        let fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw systemError("shm_open(\(name), create)") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(byteCount)) == 0 else {
            let error = systemError("ftruncate(\(name), \(byteCount))")
            shm_unlink(name)
            throw error
        }
        do {
            return try SharedMemoryRegion(name: name, fd: fd, byteCount: byteCount, ownsName: true)
        } catch {
            shm_unlink(name)
            throw error
        }
    }

    /// Opens and maps an existing object made by the peer; its size must be exactly `byteCount`.
    static func open(name: String, byteCount: Int) throws(KVTransportError) -> SharedMemoryRegion {
        guard name.hasPrefix("/baton-kv-"), !name.dropFirst().contains("/") else {
            throw KVTransportError(.sharedMemory, "refusing shared-memory name \(name) (expected /baton-kv-…)")
        }
        let fd = shm_open(name, O_RDWR, 0)
        guard fd >= 0 else { throw systemError("shm_open(\(name))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw systemError("fstat(\(name))") }
        guard Int(status.st_size) == byteCount else {
            throw KVTransportError(.sharedMemory, "shared-memory object \(name) has \(status.st_size) bytes, expected \(byteCount)")
        }
        return try SharedMemoryRegion(name: name, fd: fd, byteCount: byteCount, ownsName: false)
    }

    private init(name: String, fd: Int32, byteCount: Int, ownsName: Bool) throws(KVTransportError) {
        guard byteCount > 0 else { throw KVTransportError(.invalidArgument, "shared-memory region of \(byteCount) bytes") }
        // Populating up front maps every page in one call instead of one fault per 4 KiB page later.
        #if os(Linux)
        let flags = MAP_SHARED | MAP_POPULATE
        #else
        let flags = MAP_SHARED
        #endif
        guard let pointer = mmap(nil, byteCount, PROT_READ | PROT_WRITE, flags, fd, 0), pointer != MAP_FAILED else {
            throw Self.systemError("mmap(\(name), \(byteCount) bytes)")
        }
        self.name = name
        self.byteCount = byteCount
        self.base = pointer
        self.ownsName = ownsName
    }

    /// Lends `[offset, offset + count)` of the mapping. Do not let the pointer escape `body`.
    func withBytes<R>(offset: Int, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        precondition(!released && offset >= 0 && count >= 0 && offset + count <= byteCount, "shared-memory range out of bounds")
        return try body(UnsafeMutableRawBufferPointer(start: base + offset, count: count))
    }

    /// `[offset, offset + count)` of the mapping, for a caller that keeps the region alive (not released)
    /// for as long as it uses the pointer.
    func unsafeBytes(offset: Int, count: Int) -> UnsafeRawBufferPointer {
        precondition(!released && offset >= 0 && count >= 0 && offset + count <= byteCount, "shared-memory range out of bounds")
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Removes the name (the creator only); mappings stay valid.
    func unlink() {
        guard ownsName, !unlinked else { return }
        unlinked = true
        shm_unlink(name)
    }

    func release() {
        unlink()
        guard !released else { return }
        released = true
        munmap(base, byteCount)
    }

    deinit { release() }

    static func uniqueName() -> String {
        "/baton-kv-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    }

    private static func systemError(_ call: String) -> KVTransportError {
        let code = errno
        return KVTransportError(.sharedMemory, "\(call): \(String(cString: strerror(code))) (errno \(code))")
    }
}
