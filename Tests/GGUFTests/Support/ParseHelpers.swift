import GGUF

/// The error `GGUFFile(bytes:name:)` throws for `bytes`, or nil if it parses.
func parseError(_ bytes: [UInt8], name: String = "test.gguf") -> GGUFError? {
    do {
        _ = try GGUFFile(bytes: bytes, name: name)
        return nil
    } catch {
        return error
    }
}
