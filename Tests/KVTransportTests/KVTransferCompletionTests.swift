import ClusterProtocol
import Testing

@testable import KVTransport

@Suite("KV transfer completion")
struct KVTransferCompletionTests {
    @Test("the first token's log-probabilities travel with the completion")
    func logprobsRoundTrip() throws {
        let sent = KVTransferCompletion(
            firstToken: 42, samplingState: KVSamplingState(rngState: [7], recentTokens: [1, 2], parameters: [9]),
            tokenCount: 3, firstTokenLogprobs: KVFirstTokenLogprobs(logprob: -0.25, top: [(42, -0.25), (17, -1.5)]))
        let received = try KVTransferCompletion(proto: sent.proto(requestID: "r"))
        #expect(received.firstTokenLogprobs == sent.firstTokenLogprobs)
        #expect(received.firstTokenLogprobs?.top.map(\.0) == [42, 17])
        #expect(received.firstToken == 42 && received.tokenCount == 3)
    }

    @Test("a completion without log-probabilities arrives without them")
    func noLogprobs() throws {
        let received = try KVTransferCompletion(proto: KVTransferCompletion(firstToken: 5, tokenCount: 1).proto(requestID: "r"))
        #expect(received.firstTokenLogprobs == nil)
    }

    @Test("alternatives and log-probabilities of different lengths are a protocol violation")
    func mismatchedLengths() {
        var message = KVTransferCompletion(firstToken: 5, tokenCount: 1).proto(requestID: "r")
        message.firstTokenLogprobs.logprob = -1
        message.firstTokenLogprobs.topTokens = [5, 6]
        message.firstTokenLogprobs.topLogprobs = [-1]
        let error = #expect(throws: KVTransportError.self) { _ = try KVTransferCompletion(proto: message) }
        #expect(error?.code == .protocolViolation)
    }
}
