internal import CKernels
import Foundation

/// The membership log on disk: JSON lines, one `MembershipEvent` per line, append-only, fsync'd after
/// every append, replayed into a `ClusterState` when opened — so a restarted placement service knows
/// its cluster again.
///
/// Line format: `<event JSON>\tcrc32c:<8 lowercase hex digits>\n`, the CRC-32C of the JSON bytes. Lines
/// without the tab (written before checksums) are read as plain JSON.
///
/// Recovery rules: a final line that does not decode is a write torn by a crash; it is dropped with a
/// warning and cut off the file so later appends start on a clean line. A damaged line anywhere else (its
/// checksum does not match, or it does not decode) is skipped with a warning naming its line: workers
/// register again anyway, so a lost event costs less than a service that will not start. Opening then
/// reports `damagedRecords`, and the owner compacts the log so the damage does not stay on disk.
///
/// Not thread-safe: one owner (the registry actor) calls it.
public final class MembershipLog {
    public let path: String
    /// The fold of every event in the log, kept current by `append`.
    public private(set) var state: ClusterState
    /// Problems recovered from while opening (a torn final line), for the caller to log.
    public let warnings: [String]
    /// Events in the file.
    public private(set) var eventCount: Int
    /// Bytes in the file.
    public private(set) var byteCount: Int
    /// Damaged lines skipped while opening.
    public let damagedRecords: Int
    private var handle: FileHandle

    /// Opens the log at `path`, creating it (and its folder) when missing, and replays it.
    public init(path: String) throws(PlacementError) {
        self.path = path
        let manager = FileManager.default
        let folder = (path as NSString).deletingLastPathComponent
        do {
            if !folder.isEmpty { try manager.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        } catch {
            throw PlacementError(.io, "cannot create folder for membership log \(path)",
                                 cause: UnderlyingError(description: error.localizedDescription))
        }
        if !manager.fileExists(atPath: path) {
            guard manager.createFile(atPath: path, contents: nil) else {
                throw PlacementError(.io, "cannot create membership log \(path)")
            }
            Self.syncFolder(of: path)
        }
        guard let handle = FileHandle(forUpdatingAtPath: path) else {
            throw PlacementError(.io, "cannot open membership log \(path) for writing")
        }
        let data: Data
        do {
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw PlacementError(.io, "cannot read membership log \(path)",
                                 cause: UnderlyingError(description: error.localizedDescription))
        }
        let replay = try Self.replay(data, file: path)
        do {
            if replay.validLength < data.count {
                try handle.truncate(atOffset: UInt64(replay.validLength))
                guard fsync(handle.fileDescriptor) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            }
            try handle.seekToEnd()
            if replay.needsNewline {
                try handle.write(contentsOf: Data("\n".utf8))
                guard fsync(handle.fileDescriptor) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            }
        } catch {
            throw PlacementError(.io, "cannot repair membership log \(path)",
                                 cause: UnderlyingError(description: "\(error)"))
        }
        self.handle = handle
        self.state = replay.state
        self.warnings = replay.warnings
        self.eventCount = replay.events
        self.damagedRecords = replay.damaged
        self.byteCount = replay.validLength + (replay.needsNewline ? 1 : 0)
    }

    deinit {
        try? handle.close()
    }

    /// Writes `event` as one line, fsyncs, then applies it to `state`. When this returns the event
    /// survives a crash; when it throws, `state` is unchanged.
    public func append(_ event: MembershipEvent) throws(PlacementError) {
        try append([event])
    }

    /// Appends several events with a single fsync (for example every `heartbeatLost` from one `expire`).
    public func append(_ events: [MembershipEvent]) throws(PlacementError) {
        guard !events.isEmpty else { return }
        var bytes = Data()
        for event in events { bytes.append(try Self.encodeLine(event)) }
        do {
            try handle.write(contentsOf: bytes)
            guard fsync(handle.fileDescriptor) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        } catch {
            throw PlacementError(.io, "cannot append to membership log \(path)",
                                 cause: UnderlyingError(description: "\(error)"))
        }
        for event in events { state.apply(event) }
        eventCount += events.count
        byteCount += bytes.count
    }

    /// Rewrites the log as the shortest event list that rebuilds the current state (written to a
    /// temporary file, fsync'd, renamed over the log), so it does not grow without bound.
    public func compact() throws(PlacementError) {
        let temporary = path + ".compact"
        let events = state.snapshotEvents
        var bytes = Data()
        for event in events { bytes.append(try Self.encodeLine(event)) }
        do {
            try? FileManager.default.removeItem(atPath: temporary)
            guard FileManager.default.createFile(atPath: temporary, contents: nil),
                  let out = FileHandle(forWritingAtPath: temporary) else {
                throw PlacementError(.io, "cannot create \(temporary)")
            }
            try out.write(contentsOf: bytes)
            guard fsync(out.fileDescriptor) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            try out.close()
            guard rename(temporary, path) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            Self.syncFolder(of: path)
            guard let reopened = FileHandle(forUpdatingAtPath: path) else {
                throw PlacementError(.io, "cannot reopen membership log \(path)")
            }
            try reopened.seekToEnd()
            try? handle.close()
            handle = reopened
            byteCount = bytes.count
        } catch let error as PlacementError {
            throw error
        } catch {
            throw PlacementError(.io, "cannot compact membership log \(path)",
                                 cause: UnderlyingError(description: "\(error)"))
        }
        eventCount = events.count
    }

    // MARK: Pure parts

    /// The result of replaying log bytes.
    public struct Replay: Sendable {
        public var state: ClusterState
        public var events: Int
        public var warnings: [String]
        /// Bytes up to the end of the last good line: the file is cut to this length when it had a torn tail.
        public var validLength: Int
        /// The last event is complete but lacks its newline.
        public var needsNewline = false
        /// Damaged lines skipped (not counting a torn last line).
        public var damaged = 0
    }

    /// Replays log bytes; `file` names the log in errors and warnings.
    public static func replay(_ data: Data, file: String) throws(PlacementError) -> Replay {
        let decoder = JSONDecoder()
        var result = Replay(state: ClusterState(), events: 0, warnings: [], validLength: 0)
        let bytes = [UInt8](data)
        var lineStart = 0
        var lineNumber = 0
        while lineStart < bytes.count {
            lineNumber += 1
            let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n"))
            let lineEnd = newline ?? bytes.count
            let next = newline.map { $0 + 1 } ?? bytes.count
            let line = bytes[lineStart..<lineEnd]
            defer { lineStart = next }
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) {
                if newline != nil { result.validLength = next }
                continue
            }
            var checked = false
            do {
                let json = try Self.verifiedJSON(line)
                checked = json.count < line.count
                let event = try decoder.decode(MembershipEvent.self, from: Data(json))
                result.state.apply(event)
                result.events += 1
                if newline != nil {
                    result.validLength = next
                } else {
                    // A whole event cut just before its newline: keep it; opening adds the newline so
                    // the next append does not glue onto it.
                    result.validLength = bytes.count
                    result.needsNewline = true
                }
            } catch let error as UnsupportedLogFormat {
                // Never mistaken for a torn line: dropping it would lose a newer build's events.
                throw PlacementError(.unsupportedLogFormat,
                                     "line \(lineNumber) is in membership log format \(error.format), but this build "
                                        + "reads formats 1 to \(MembershipEvent.currentFormat); run a newer baton",
                                     location: .init(file: file, line: lineNumber))
            } catch {
                // Intact bytes (the checksum matched) that do not decode were written by a build that knows
                // events this one does not: skipping them would lose that build's state.
                if checked {
                    throw PlacementError(.corruptLog, "line \(lineNumber) is intact but not a membership event this build reads",
                                         location: .init(file: file, line: lineNumber),
                                         cause: UnderlyingError(description: "\(error)"))
                }
                let isLast = bytes[next...].allSatisfy {
                    $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r")
                }
                guard isLast else {
                    result.damaged += 1
                    result.warnings.append(
                        "\(file):\(lineNumber): skipping a damaged membership record (\(line.count) bytes): \(error)")
                    if newline != nil { result.validLength = next }
                    continue
                }
                result.warnings.append(
                    "\(file):\(lineNumber): ignoring torn last line (\(line.count) bytes), probably cut by a crash")
                return result
            }
        }
        return result
    }

    /// The JSON part of a log line, after checking its checksum when it carries one.
    static func verifiedJSON(_ line: ArraySlice<UInt8>) throws(PlacementError) -> ArraySlice<UInt8> {
        guard let tab = line.lastIndex(of: UInt8(ascii: "\t")) else { return line }
        let json = line[line.startIndex..<tab]
        let suffix = String(decoding: line[(tab + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard suffix.hasPrefix(checksumPrefix), let stored = UInt32(suffix.dropFirst(checksumPrefix.count), radix: 16)
        else {
            throw PlacementError(.corruptLog, "the checksum field \"\(suffix.prefix(40))\" is malformed")
        }
        let computed = checksum(json)
        guard stored == computed else {
            throw PlacementError(
                .corruptLog, "checksum mismatch (stored \(hex(stored)), computed \(hex(computed)))")
        }
        return json
    }

    static let checksumPrefix = "crc32c:"

    /// CRC-32C of `bytes` (the KV transport's kernel).
    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        Array(bytes).withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return 0 }
            return bk_crc32c(0, base, raw.count)
        }
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func encodeLine(_ event: MembershipEvent) throws(PlacementError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            var data = try encoder.encode(event)
            let sum = checksum(data)
            data.append(contentsOf: Array("\t\(checksumPrefix)\(hex(sum))\n".utf8))
            return data
        } catch {
            throw PlacementError(.invalidArgument, "cannot encode \(event.kind) event for \(event.worker)",
                                 cause: UnderlyingError(description: "\(error)"))
        }
    }

    /// fsync the folder so a newly created or renamed file's directory entry is durable too.
    private static func syncFolder(of path: String) {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
