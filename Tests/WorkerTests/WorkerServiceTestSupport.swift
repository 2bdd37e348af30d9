import ClusterProtocol
import Foundation
import Generation
import Inference
import KVTransport
import Logging
import Placement
import RPC
import Testing
import Worker

/// A prefill worker and a decode worker in this process, assembled by `WorkerNode` as `baton worker` assembles
/// them, each on its own mutual-TLS listener, and the router's connections to both: the real routes over real
/// sockets, with the default model.
final class WorkerPair: @unchecked Sendable {
    let fixture: HandoffFixture
    let decodeNode: WorkerNode
    let prefillNode: WorkerNode
    let decodeClient: NodeClient
    let prefillClient: NodeClient
    private let running: [Task<Void, any Error>]

    var scheduler: DecodeScheduler { decodeNode.scheduler! }
    var decodeService: WorkerService { decodeNode.service }
    var prefillService: WorkerService { prefillNode.service }
    var prefill: PrefillService { prefillNode.prefill! }

    static let authority = Result { try ClusterCertificates.makeAuthority() }

    static func tls(_ node: String, _ roles: Set<NodeRole>) throws -> NodeTLS {
        let authority = try authority.get()
        return ClusterCertificates.tls(
            node: try ClusterCertificates.issueNode(node, roles: roles, authority: authority), authorityPEM: authority.certificatePEM)
    }

    /// - Parameters:
    ///   - kvBlocks: the decode worker's pool (16 tokens a block).
    ///   - sharedMemory: whether KV may travel through shared memory (else mutual-TLS HTTP/2).
    ///   - decodeRoles: `[.decode]`, or `[.decode, .prefill]` (role both: local prompts on the prefill path).
    ///   - maxQueued: generations that may wait for room on the decode worker.
    init(
        kvBlocks: Int = 64, maxBatch: Int = 8, sharedMemory: Bool = true, decodeRoles: Set<WorkerRole> = [.decode],
        maxQueued: Int = 256, maximumTransferTimeout: Duration = .seconds(600), peerKVShare: Double = 1
    ) async throws {
        fixture = try HandoffFixture.get()
        var logger = Logger(label: "test.worker")
        logger.logLevel = .warning
        var decodeSettings = WorkerNode.Configuration(
            name: "decode-0", roles: decodeRoles, threads: 2, context: HandoffFixture.context, listenHost: "127.0.0.1",
            listenPort: 0, transport: KVTransportConfiguration(tls: try Self.tls("decode-0", Set(decodeRoles.map(NodeRole.init(worker:))))))
        decodeSettings.kvBlocks = kvBlocks
        decodeSettings.maxBatch = maxBatch
        decodeSettings.maxQueued = maxQueued
        decodeSettings.transferTimeout = .seconds(20)
        decodeSettings.drainTimeout = .seconds(5)
        decodeSettings.maximumTransferTimeout = maximumTransferTimeout
        decodeSettings.peerKVShare = peerKVShare
        decodeNode = try await WorkerNode(model: fixture.model, tokenizer: fixture.tokenizer, configuration: decodeSettings, logger: logger)

        var transport = KVTransportConfiguration(tls: try Self.tls("prefill-0", [.prefill]))
        transport.policy.allowSharedMemory = sharedMemory
        var prefillSettings = WorkerNode.Configuration(
            name: "prefill-0", roles: [.prefill], threads: 2, context: HandoffFixture.context, listenHost: "127.0.0.1",
            listenPort: 0, transport: transport)
        prefillSettings.drainTimeout = .seconds(5)
        prefillNode = try await WorkerNode(model: fixture.model, tokenizer: fixture.tokenizer, configuration: prefillSettings, logger: logger)
        running = [Task { [decodeNode] in try await decodeNode.run() }, Task { [prefillNode] in try await prefillNode.run() }]

        let router = try Self.tls("router", [.router])
        decodeClient = try await NodeClient.connect(
            host: "127.0.0.1", port: decodeNode.port, tls: router, expecting: .node("decode-0", as: .decode))
        prefillClient = try await NodeClient.connect(
            host: "127.0.0.1", port: prefillNode.port, tls: router, expecting: .node("prefill-0", as: .prefill))
    }

    /// Stops both workers as graceful shutdown would (outside a service group, cancelling `run` triggers it).
    func close() async {
        await decodeClient.close()
        await prefillClient.close()
        for task in running { task.cancel() }
        for task in running { _ = await task.result }
    }

    /// What one request produced.
    struct Outcome {
        var opened = false
        /// The prompt positions the decode worker said it holds (and the prefill worker was told).
        var cachedPromptTokens = 0
        var tokens: [Int32] = []
        var generated: [GeneratedToken] = []
        var finished: Baton_V1_DecodeFinished?
        var failure: Baton_V1_DecodeFailure?
        var prefill: Baton_V1_SubmitPrefillResponse?
    }

    func openRequest(
        _ state: GenerationState, prefillHere: Bool = false, transferTimeoutMs: UInt32 = 0, prefillWorker: String = "prefill-0"
    ) -> Baton_V1_OpenDecodeRequest {
        var request = Baton_V1_OpenDecodeRequest()
        request.state = state.proto
        request.prefillHere = prefillHere
        request.transferTimeoutMs = transferTimeoutMs
        if !prefillHere { request.prefillWorker = prefillWorker }
        return request
    }

    func prefillRequest(_ id: String, prompt: [Int32]) -> Baton_V1_SubmitPrefillRequest {
        var request = Baton_V1_SubmitPrefillRequest()
        request.requestID = id
        request.promptTokens = prompt
        var address = Baton_V1_WorkerAddress()
        address.host = "127.0.0.1"
        address.port = UInt32(decodeNode.port)
        address.name = "decode-0"
        request.decodeWorker = address
        return request
    }

    /// Opens the decode stream; the caller reads `opened` and the rest from `messages`.
    func openDecode(_ request: Baton_V1_OpenDecodeRequest) async throws -> NodeStreamResponse {
        try await decodeClient.stream(
            BatonProtocol.WorkerControl.openDecode, body: try request.serializedBytes(), idleTimeout: .seconds(20))
    }

    func submitPrefill(_ request: Baton_V1_SubmitPrefillRequest) async throws -> NodeResponse {
        try await prefillClient.call(
            BatonProtocol.WorkerControl.submitPrefill, body: try request.serializedBytes(),
            contentType: "application/x-protobuf", timeout: .seconds(60))
    }

    /// The router's order: OpenDecode, wait for `opened`, SubmitPrefill, relay tokens to the end. `stopAfter`
    /// tokens, the stream is reset (the router's way to give up).
    func run(_ state: GenerationState, prefillHere: Bool = false, stopAfter: Int? = nil) async throws -> Outcome {
        let stream = try await openDecode(openRequest(state, prefillHere: prefillHere))
        #expect(stream.status == 200, "OpenDecode answered \(stream.status): \(String(decoding: stream.body, as: UTF8.self))")
        var outcome = Outcome()
        var submission: Task<NodeResponse, any Error>?
        for try await bytes in stream.messages {
            let event = try Baton_V1_DecodeEvent(serializedBytes: bytes)
            switch event.event {
            case .opened(let opened):
                outcome.opened = true
                outcome.cachedPromptTokens = Int(opened.cachedPromptTokens)
                if !prefillHere {
                    var request = prefillRequest(state.request.id, prompt: state.request.prompt)
                    request.decodeCachedTokens = opened.cachedPromptTokens
                    submission = Task { try await self.submitPrefill(request) }
                }
            case .token(let token):
                outcome.tokens.append(token.token)
                outcome.generated.append(GeneratedToken(proto: token))
                if let stopAfter, outcome.tokens.count == stopAfter { stream.cancel() }
            case .finished(let finished): outcome.finished = finished
            case .failure(let failure): outcome.failure = failure
            case .moving: Issue.record("a generation not opened movable paused to move")
            case nil: Issue.record("an empty DecodeEvent")
            }
            if let stopAfter, outcome.tokens.count >= stopAfter { break }
        }
        if let submission {
            let response = try await submission.value
            #expect(response.status == 200, "SubmitPrefill answered \(response.status): \(response.bodyText)")
            if response.status == 200 { outcome.prefill = try Baton_V1_SubmitPrefillResponse(serializedBytes: response.body) }
        }
        return outcome
    }
}

/// The JSON error body of a non-200 answer.
func errorCode(_ body: [UInt8]) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
    return object["code"] as? String
}
