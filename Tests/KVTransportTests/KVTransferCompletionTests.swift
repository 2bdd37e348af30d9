import ClusterProtocol
import Testing

@testable import KVTransport

@Suite("KV transfer completion")
struct KVTransferCompletionTests {
    @Test("the prompt's logits travel as the completion frame's payload, counted and checksummed")
    func logitsRoundTrip() throws {
        let sent = KVTransferCompletion(tokenCount: 3, logits: [0, -1.5, .infinity, -.infinity, 3.25e-8])
        let header = sent.proto(requestID: "r")
        #expect(header.logitsCount == 5 && header.tokenCount == 3)
        let received = try sent.logits.withUnsafeBytes { try KVTransferCompletion(proto: header, payload: $0) }
        #expect(received == sent)
    }

    @Test("an empty payload is a completion without logits only when it says so")
    func emptyLogits() throws {
        let header = KVTransferCompletion(tokenCount: 1, logits: []).proto(requestID: "r")
        let received = try [UInt8]().withUnsafeBytes { try KVTransferCompletion(proto: header, payload: $0) }
        #expect(received.logits.isEmpty)
        let wrong = KVTransferCompletion(tokenCount: 1, logits: [1, 2]).proto(requestID: "r")
        let error = #expect(throws: KVTransportError.self) {
            _ = try [UInt8]().withUnsafeBytes { try KVTransferCompletion(proto: wrong, payload: $0) }
        }
        #expect(error?.code == .protocolViolation)
    }
}
