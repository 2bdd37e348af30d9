import Foundation

/// The bearer API keys the router accepts. Empty means authentication is off.
public struct APIKeySet: Sendable, Equatable {
    public let keys: Set<String>

    public init(keys: Set<String>) {
        self.keys = keys
    }

    /// Authentication off.
    public static let disabled = APIKeySet(keys: [])

    public var isEnabled: Bool { !keys.isEmpty }

    /// Parses a key file: one key per line; leading/trailing whitespace is trimmed; blank lines and lines
    /// starting with `#` are ignored. A key may not contain whitespace. Errors name the file and line.
    public static func parse(_ text: String, fileName: String) throws(RouterError) -> APIKeySet {
        var keys = Set<String>()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard !line.contains(where: { $0.isWhitespace }) else {
                throw RouterError(
                    .invalidConfiguration, "\(fileName):\(index + 1): an API key may not contain whitespace")
            }
            keys.insert(line)
        }
        guard !keys.isEmpty else {
            throw RouterError(.invalidConfiguration, "\(fileName): no API keys found (the file only has comments or blank lines)")
        }
        return APIKeySet(keys: keys)
    }

    /// Reads and parses a key file.
    public static func load(path: String) throws(RouterError) -> APIKeySet {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw RouterError(.invalidConfiguration, "cannot read API key file \(path)", cause: error)
        }
        return try parse(text, fileName: path)
    }

    /// Whether an `Authorization` header value carries an accepted key. Compares every key in full so the
    /// time taken does not reveal how much of a key matched.
    public func accepts(authorization: String?) -> Bool {
        guard let authorization else { return false }
        let prefix = "Bearer "
        guard authorization.count > prefix.count,
              authorization.prefix(prefix.count).lowercased() == prefix.lowercased()
        else { return false }
        let presented = Array(authorization.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces).utf8)
        var accepted = false
        for key in keys where Self.constantTimeEqual(Array(key.utf8), presented) {
            accepted = true
        }
        return accepted
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
