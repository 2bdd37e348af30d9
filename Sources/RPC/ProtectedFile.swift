import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files created with their final mode: a key or the join-token store never exists with wider permissions, not
/// even for a moment (no create-then-chmod race), and never through a symlink someone left in the way.
public enum ProtectedFile {
    /// Mode of private files: keys, the join-token store.
    public static let privateMode: mode_t = 0o600
    /// Mode of public files: certificates.
    public static let publicMode: mode_t = 0o644

    /// Writes `bytes` to a new file at `path` created with `mode` (an existing file or symlink there is removed
    /// first). With `durable`, the data reaches the disk before this returns.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t, durable: Bool = false) throws(RPCError) {
        if unlink(path) != 0 && errno != ENOENT {
            throw RPCError(.invalidArgument, "cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw RPCError(.invalidArgument, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        // The umask may have narrowed a wider mode; a private file's 0600 is already the narrowest, so it is never
        // touched after creation.
        if mode != privateMode { fchmod(descriptor, mode) }
        var remaining = bytes[...]
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { systemWrite(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw RPCError(.invalidArgument, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            remaining = remaining.dropFirst(written)
        }
        if durable && fsync(descriptor) != 0 {
            throw RPCError(.invalidArgument, "cannot flush \(path) to disk: \(String(cString: strerror(errno)))")
        }
    }

    /// Replaces the file at `path` with `bytes` atomically (a temporary file beside it, created with `mode`, flushed,
    /// then renamed over it, and the directory flushed): a reader sees the old or the new content, never half.
    public static func replace(_ bytes: [UInt8], at path: String, mode: mode_t) throws(RPCError) {
        let temporary = path + ".tmp"
        try write(bytes, to: temporary, mode: mode, durable: true)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw RPCError(.invalidArgument, "cannot move \(temporary) to \(path): \(reason)")
        }
        let directory = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }

    private static func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(descriptor, buffer, count)
        #else
        Darwin.write(descriptor, buffer, count)
        #endif
    }
}
