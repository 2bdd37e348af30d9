#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A POSIX shared-memory object mapped into this process: the same-host data path. The receiver
/// `create`s it (sized for the whole transfer) and sends its name over the control stream; the sender
/// `open`s it and writes each layer in place, so KV reaches the receiver without crossing a socket.
///
/// The creator unlinks the name when the region is released (or earlier with `unlink()`); the mapping
/// stays valid until `release()` or deinit. Regions are reused between transfers through
/// `SharedMemoryRegionCache`, so a region may be larger than one transfer needs. Not thread-safe (one
/// transfer uses a region at a time); lend `bytes` only inside closures.
final class SharedMemoryRegion: @unchecked Sendable {
    let name: String
    let byteCount: Int
    private let base: UnsafeMutableRawPointer
    private let ownsName: Bool
    /// Device and inode of the object when mapped: tells whether `name` still names it.
    let identity: (device: UInt64, inode: UInt64)
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

    /// Opens and maps an existing object made by the peer for a transfer of `byteCount` bytes; its size
    /// must be one `SharedMemoryRegionCache` would lease for that (`fits`).
    static func open(name: String, byteCount: Int) throws(KVTransportError) -> SharedMemoryRegion {
        let (fd, status) = try openExisting(name: name)
        defer { close(fd) }
        guard fits(Int(status.st_size), byteCount) else {
            throw KVTransportError(.sharedMemory, "shared-memory object \(name) has \(status.st_size) bytes, too few or too many for \(byteCount)")
        }
        return try SharedMemoryRegion(name: name, fd: fd, byteCount: Int(status.st_size), ownsName: false)
    }

    /// Whether `name` still names the object this region maps (the peer may have replaced it).
    func stillNamed() -> Bool {
        guard let opened = try? Self.openExisting(name: name) else { return false }
        close(opened.0)
        return (UInt64(opened.1.st_dev), UInt64(opened.1.st_ino)) == identity
    }

    private static func openExisting(name: String) throws(KVTransportError) -> (Int32, stat) {
        guard name.hasPrefix("/baton-kv-"), !name.dropFirst().contains("/") else {
            throw KVTransportError(.sharedMemory, "refusing shared-memory name \(name) (expected /baton-kv-…)")
        }
        let fd = shm_open(name, O_RDWR, 0)
        guard fd >= 0 else { throw systemError("shm_open(\(name))") }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let error = systemError("fstat(\(name))")
            close(fd)
            throw error
        }
        return (fd, status)
    }

    /// Whether a region of `capacity` bytes may carry a transfer of `byteCount`: big enough, and not
    /// more than twice the need plus 16 MiB (a reused region, without letting a peer make this side map
    /// an arbitrarily large object).
    static func fits(_ capacity: Int, _ byteCount: Int) -> Bool {
        capacity >= byteCount && capacity <= 2 * byteCount + (16 << 20)
    }

    private init(name: String, fd: Int32, byteCount: Int, ownsName: Bool) throws(KVTransportError) {
        guard byteCount > 0 else { throw KVTransportError(.invalidArgument, "shared-memory region of \(byteCount) bytes") }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw Self.systemError("fstat(\(name))") }
        self.identity = (UInt64(status.st_dev), UInt64(status.st_ino))
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

    /// Unlinks the objects in `/dev/shm` (where `shm_open` names live) that a process of this user created
    /// (`baton-kv-PID-…`, from `uniqueName`) and that process no longer runs: a creator killed with SIGKILL
    /// never unlinks its names, and each holds up to hundreds of megabytes of memory. Returns the names removed.
    ///
    /// A process of another PID namespace sharing the directory would look dead here; containers get their own
    /// `/dev/shm`, and shared memory is only chosen between processes that report the same host id.
    @discardableResult
    static func removeStale() -> [String] {
        let directory = "/dev/shm"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for entry in entries where entry.hasPrefix("baton-kv-") {
            let parts = entry.dropFirst("baton-kv-".count).split(separator: "-")
            guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, UInt64(parts[1]) != nil else { continue }
            var status = stat()
            guard stat(directory + "/" + entry, &status) == 0, status.st_uid == getuid() else { continue }
            // ESRCH: no such process. (EPERM means it runs under another user: not ours to judge.)
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }
            if shm_unlink("/" + entry) == 0 { removed.append(entry) }
        }
        return removed
    }

    private static func systemError(_ call: String) -> KVTransportError {
        let code = errno
        return KVTransportError(.sharedMemory, "\(call): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// Shared-memory regions kept mapped between transfers: creating, populating and unmapping a region
/// of tens to hundreds of megabytes per transfer costs about as much as copying the KV through it.
///
/// The receiving side leases a region per transfer (the smallest idle one that `fits`, else a new one,
/// sized up to a multiple of 16 MiB) and gives it back when the transfer ends, whatever its outcome; the
/// sending side keeps its mappings of the peer's regions by name, checking that the name still names
/// the same object before reusing one. Idle regions are bounded (`maximumIdle` each side); idle
/// receiving regions are unlinked at normal process exit. A peer that keeps a mapping could write into
/// a region after its transfer: each layer is verified after it is copied out, so that cannot inject KV.
final class SharedMemoryRegionCache: Sendable {
    /// The process's receiving-side regions (created here, named to peers).
    static let receiving = SharedMemoryRegionCache(creates: true)
    /// The process's mappings of peers' regions.
    static let sending = SharedMemoryRegionCache(creates: false)

    private let creates: Bool
    private let idle = Mutex<[SharedMemoryRegion]>([])
    /// Idle regions kept, at most (each side).
    let maximumIdle = 4

    private init(creates: Bool) {
        self.creates = creates
        if creates {
            // Names of idle regions would outlive the process in /dev/shm.
            atexit { SharedMemoryRegionCache.receiving.releaseIdle() }
        }
    }

    /// Receiving side: a region for a transfer of `byteCount` bytes, reused when one fits.
    func lease(byteCount: Int) throws(KVTransportError) -> SharedMemoryRegion {
        precondition(creates, "lease is for the receiving side")
        let reused: SharedMemoryRegion? = idle.withLock { regions in
            let candidates = regions.indices.filter { SharedMemoryRegion.fits(regions[$0].byteCount, byteCount) }
            guard let best = candidates.min(by: { regions[$0].byteCount < regions[$1].byteCount }) else { return nil }
            return regions.remove(at: best)
        }
        if let reused { return reused }
        let rounded = (byteCount + (16 << 20) - 1) / (16 << 20) * (16 << 20)
        return try SharedMemoryRegion.create(name: SharedMemoryRegion.uniqueName(), byteCount: rounded)
    }

    /// Sending side: the peer's region `name` for a transfer of `byteCount` bytes, from an earlier
    /// mapping while the name still names the same object.
    func open(name: String, byteCount: Int) throws(KVTransportError) -> SharedMemoryRegion {
        precondition(!creates, "open is for the sending side")
        let cached: SharedMemoryRegion? = idle.withLock { regions in
            guard let index = regions.firstIndex(where: { $0.name == name }) else { return nil }
            return regions.remove(at: index)
        }
        if let cached {
            if cached.stillNamed() && SharedMemoryRegion.fits(cached.byteCount, byteCount) { return cached }
            cached.release()
        }
        return try SharedMemoryRegion.open(name: name, byteCount: byteCount)
    }

    /// Keeps `region` for the next transfer (releasing the oldest idle one beyond `maximumIdle`).
    func giveBack(_ region: SharedMemoryRegion) {
        let evicted: [SharedMemoryRegion] = idle.withLock { regions in
            regions.append(region)
            guard regions.count > maximumIdle else { return [] }
            let extra = Array(regions.prefix(regions.count - maximumIdle))
            regions.removeFirst(regions.count - maximumIdle)
            return extra
        }
        evicted.forEach { $0.release() }
    }

    /// Releases (and, receiving side, unlinks) every idle region.
    func releaseIdle() {
        let all = idle.withLock { regions in
            defer { regions = [] }
            return regions
        }
        all.forEach { $0.release() }
    }
}
