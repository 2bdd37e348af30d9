import Testing

/// Checks found command lines against `BatonCLISpec`, recording one issue per bad command line.
enum BatonFlagChecks {
    /// - Returns: the command lines that parsed; each bad one is recorded as a test issue.
    @discardableResult
    static func check(_ found: [DeployInvocations.Found], sourceLocation: SourceLocation = #_sourceLocation)
        -> [BatonCLISpec.Invocation]
    {
        #expect(!found.isEmpty, "no baton command line found", sourceLocation: sourceLocation)
        var invocations: [BatonCLISpec.Invocation] = []
        for item in found {
            switch BatonCLISpec.parse(item.words, source: item.source) {
            case .success(let invocation): invocations.append(invocation)
            case .failure(let failure): Issue.record("\(failure)", sourceLocation: sourceLocation)
            }
        }
        return invocations
    }
}
