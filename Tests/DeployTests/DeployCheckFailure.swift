/// Why a deploy check could not run or what it found wrong, worded for the person reading the test log.
struct DeployCheckFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}
