/// The one error type of the placement module: a code to match on, a message for people, where in a
/// config file the problem is (when it came from one), and the underlying cause.
public struct PlacementError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a form callers can switch over. Extensible: new codes are static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A config file is not valid YAML, has an unknown key, a wrong type or an out-of-range value.
        public static let invalidConfig = Code("invalid config")
        /// A file could not be read or written.
        public static let io = Code("I/O error")
        /// The membership log has a corrupt line before its last one.
        public static let corruptLog = Code("corrupt membership log")
        /// The membership log was written by a newer build, in a format this one does not read.
        public static let unsupportedLogFormat = Code("unsupported membership log format")
        /// A device measurement could not be taken (for example, /proc/meminfo unreadable).
        public static let measurementFailed = Code("measurement failed")
        /// A caller passed a value outside what the API accepts.
        public static let invalidArgument = Code("invalid argument")
    }

    /// Where in a file a problem is. Lines and columns count from 1.
    public struct Location: Sendable, Equatable, CustomStringConvertible {
        public let file: String
        public let line: Int?
        public let column: Int?
        /// The dotted key path, for example `prefill.min_gflops` or `workers[1].profile.cores`.
        public let key: String?

        public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil) {
            self.file = file
            self.line = line
            self.column = column
            self.key = key
        }

        /// `file:line:column` (the parts that are known).
        public var description: String {
            var text = file
            if let line { text += ":\(line)" }
            if let column { text += ":\(column)" }
            return text
        }
    }

    public let code: Code
    public let message: String
    public let location: Location?
    public let cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, location: Location? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.cause = cause
    }

    /// `file:line:column: key: message`, in the form compilers use so editors can jump to it.
    public var description: String {
        var text = ""
        if let location {
            text += "\(location): "
            if let key = location.key { text += "\(key): " }
        }
        text += message
        if let cause { text += " (caused by: \(cause))" }
        return "\(code): \(text)"
    }
}

/// A cause that is only text: used where the underlying error is not `Sendable` (Yams' errors).
struct UnderlyingError: Error, Sendable, CustomStringConvertible {
    let description: String
}
