import Foundation
@testable import KVTransport
import Testing

@Suite("Shared-memory region reuse")
struct SharedMemoryRegionCacheTests {
    @Test("A region given back is leased again for a transfer of a similar size")
    func leaseReusesRegion() throws {
        let cache = SharedMemoryRegionCache.receiving
        let first = try cache.lease(byteCount: 5_000_000)
        let name = first.name
        #expect(first.byteCount >= 5_000_000)
        cache.giveBack(first)
        let second = try cache.lease(byteCount: 4_000_000)
        #expect(second.name == name)
        cache.giveBack(second)
    }

    @Test("A region far too small or too large for a transfer is not leased for it")
    func leaseChecksSize() throws {
        let cache = SharedMemoryRegionCache.receiving
        let small = try cache.lease(byteCount: 1_000_000)
        cache.giveBack(small)
        let large = try cache.lease(byteCount: 40_000_000)
        #expect(large.name != small.name)
        #expect(large.byteCount >= 40_000_000)
        cache.giveBack(large)
        let tiny = try cache.lease(byteCount: 1_000)
        #expect(tiny.name != large.name, "a 48 MiB region must not carry a 1 kB transfer")
        cache.giveBack(tiny)
    }

    @Test("The sending side reuses its mapping only while the name still names the same object")
    func sendingSideChecksIdentity() throws {
        let name = SharedMemoryRegion.uniqueName()
        let original = try SharedMemoryRegion.create(name: name, byteCount: 1 << 20)
        original.withBytes(offset: 0, count: 1) { $0[0] = 7 }
        let sending = SharedMemoryRegionCache.sending
        let mapped = try sending.open(name: name, byteCount: 1 << 20)
        #expect(mapped.identity == original.identity)
        #expect(mapped.unsafeBytes(offset: 0, count: 1)[0] == 7)
        sending.giveBack(mapped)

        original.release()  // unlinks the name
        let replacement = try SharedMemoryRegion.create(name: name, byteCount: 1 << 20)
        defer { replacement.release() }
        replacement.withBytes(offset: 0, count: 1) { $0[0] = 9 }
        let remapped = try sending.open(name: name, byteCount: 1 << 20)
        #expect(remapped.identity == replacement.identity)
        #expect(remapped.unsafeBytes(offset: 0, count: 1)[0] == 9)
        sending.giveBack(remapped)
    }

    @Test("A peer's object much larger than the transfer is refused")
    func refusesOversizedObject() throws {
        let name = SharedMemoryRegion.uniqueName()
        let region = try SharedMemoryRegion.create(name: name, byteCount: 64 << 20)
        defer { region.release() }
        let error = #expect(throws: KVTransportError.self) {
            _ = try SharedMemoryRegionCache.sending.open(name: name, byteCount: 4096)
        }
        #expect(error?.code == .sharedMemory)
    }

    @Test("Regions whose creating process no longer runs are removed; live processes' regions stay")
    func staleRegionsAreRemoved() throws {
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        let deadName = "/baton-kv-\(exited.processIdentifier)-42"
        let stale = try SharedMemoryRegion.create(name: deadName, byteCount: 4096)
        let live = try SharedMemoryRegion.create(name: SharedMemoryRegion.uniqueName(), byteCount: 4096)
        let removed = SharedMemoryRegion.removeStale()
        #expect(removed.contains(String(deadName.dropFirst())))
        #expect(!FileManager.default.fileExists(atPath: "/dev/shm" + deadName))
        #expect(FileManager.default.fileExists(atPath: "/dev/shm" + live.name), "our own region stays")
        #expect(!removed.contains(String(live.name.dropFirst())))
        stale.release()
        live.release()
    }
}
