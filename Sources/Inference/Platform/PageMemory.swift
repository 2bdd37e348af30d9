#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Page-granular memory of the engines, and the one place that knows how Linux and macOS spell it: zero-filled
/// anonymous mappings (the KV cache, the interleaved weight copies) and the release of read-only file pages.
enum PageMemory {
    /// A private, zero-filled mapping of `bytes` bytes (page-aligned, committed lazily page by page), or nil with
    /// `errno` set. On Linux it asks for transparent huge pages (honoured in THP's "madvise" mode): the decode
    /// kernels stream these regions or read scattered few-KiB blocks of them, and with 4 KiB pages nearly every
    /// block costs a TLB miss. macOS has no such advice. Free it with `munmap(address, bytes)`.
    static func mapAnonymous(bytes: Int) -> UnsafeMutableRawPointer? {
        #if canImport(Darwin)
        let anonymous = MAP_ANON
        #else
        let anonymous = MAP_ANONYMOUS
        #endif
        guard let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | anonymous, -1, 0),
              address != MAP_FAILED
        else { return nil }
        #if os(Linux)
        _ = madvise(address, bytes, MADV_HUGEPAGE)
        #endif
        return address
    }

    /// Drops the whole pages of `base..<base + byteCount` from this process. Only for a read-only file mapping:
    /// the pages stay in the page cache and fault back in if read again, whereas anonymous memory would read back
    /// as zeros.
    static func releaseFilePages(_ base: UnsafeRawPointer, byteCount: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + page - 1) / page * page
        let end = (Int(bitPattern: base) + byteCount) / page * page
        guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(pointer, end - start, Int32(MADV_DONTNEED))
    }
}
