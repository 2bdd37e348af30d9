import ClusterProtocol
import Foundation
import Inference
import KVTransport
import Logging
import Testing
import Worker

/// A prefill worker and a decode worker in this process, each on its own mutual-TLS listener, and the
/// router's connections to both: the real routes over real sockets, with the default model.
final class WorkerPair: @unchecked Sendable {
    let fixture: HandoffFixture
    let scheduler: DecodeScheduler
    let decodeService: WorkerService
    let prefillService: WorkerService
    let prefill: PrefillService
    let decodeServer: KVTransferServer
    let prefillServer: NodeServer
    let decodeClient: NodeClient
    let prefillClient: NodeClient
    private let serving: [Task<Void, Never>]

    static let authority = Result { try ClusterCertificates.makeAuthority() }

    static func tls(_ node: String) throws -> KVTransportTLS {
        let authority = try authority.get()
        return ClusterCertificates.tls(node: try ClusterCertificates.issueNode(node, authority: authority), authorityPEM: authority.certificatePEM)
    }

    /// - Parameters:
    ///   - kvBlocks: the decode worker's pool (16 tokens a block).
    ///   - sharedMemory: whether KV may travel through shared memory (else mutual-TLS HTTP/2).
    ///   - prefillEngine: whether the decode worker runs local prompts on the prefill path (role both).
    init(kvBlocks: Int = 64, maxBatch: Int = 8, sharedMemory: Bool = true, prefillEngine: Bool = false) async throws {
        fixture = try HandoffFixture.get()
        var logger = Logger(label: "test.worker")
        logger.logLevel = .warning
        var settings = DecodeScheduler.Configuration(
            kvBlocks: kvBlocks, maxBatch: maxBatch, threads: 2, maxContext: HandoffFixture.context, prefillEngine: prefillEngine)
        settings.defaultTransferTimeout = .seconds(20)
        scheduler = try DecodeScheduler(
            model: fixture.model, tokenizer: fixture.tokenizer, identity: fixture.identity, configuration: settings)
        scheduler.start()
        let vocabulary = fixture.model.configuration.vocabularySize
        decodeService = WorkerService(name: "decode-0", decode: scheduler, prefill: nil, vocabularySize: vocabulary, logger: logger)
        decodeServer = try await KVTransferServer.bind(
            host: "127.0.0.1", port: 0, configuration: KVTransportConfiguration(tls: try Self.tls("decode-0")),
            identity: fixture.identity, receiver: scheduler, routes: decodeService.routes, logger: logger)

        var transport = KVTransportConfiguration(tls: try Self.tls("prefill-0"))
        transport.policy.allowSharedMemory = sharedMemory
        prefill = PrefillService(
            shipper: try PrefillKVShipper(engine: fixture.prefill, identity: fixture.identity), transport: transport,
            logger: logger)
        prefillService = WorkerService(name: "prefill-0", decode: nil, prefill: prefill, vocabularySize: vocabulary, logger: logger)
        prefillServer = try await NodeServer.bind(
            host: "127.0.0.1", port: 0, tls: try Self.tls("prefill-0"), routes: prefillService.routes, logger: logger)
        serving = [Task { [decodeServer] in await decodeServer.run() }, Task { [prefillServer] in await prefillServer.run() }]

        let router = try Self.tls("router")
        decodeClient = try await NodeClient.connect(host: "127.0.0.1", port: decodeServer.port, tls: router)
        prefillClient = try await NodeClient.connect(host: "127.0.0.1", port: prefillServer.port, tls: router)
    }

    func close() async {
        await decodeClient.close()
        await prefillClient.close()
        await prefill.closeConnections()
        await decodeServer.close()
        await prefillServer.close()
        for task in serving { task.cancel() }
        scheduler.shutdown()
    }

    /// What one request produced.
    struct Outcome {
        var opened = false
        var tokens: [Int32] = []
        var finished: Baton_V1_DecodeFinished?
        var failure: Baton_V1_DecodeFailure?
        var prefill: Baton_V1_SubmitPrefillResponse?
    }

    func openRequest(
        _ id: String, prompt: [Int32], parameters: SamplingParameters, maxNewTokens: Int, prefillHere: Bool = false,
        transferTimeoutMs: UInt32 = 0
    ) -> Baton_V1_OpenDecodeRequest {
        var request = Baton_V1_OpenDecodeRequest()
        request.requestID = id
        request.promptTokens = prompt
        request.maxNewTokens = UInt32(maxNewTokens)
        request.sampling = parameters.proto
        request.prefillHere = prefillHere
        request.transferTimeoutMs = transferTimeoutMs
        return request
    }

    func prefillRequest(_ id: String, prompt: [Int32], parameters: SamplingParameters) -> Baton_V1_SubmitPrefillRequest {
        var request = Baton_V1_SubmitPrefillRequest()
        request.requestID = id
        request.promptTokens = prompt
        request.sampling = parameters.proto
        var address = Baton_V1_WorkerAddress()
        address.host = "127.0.0.1"
        address.port = UInt32(decodeServer.port)
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

    /// The router's order: OpenDecode, wait for `opened`, SubmitPrefill, relay tokens to the end.
    func run(
        _ id: String, prompt: [Int32], parameters: SamplingParameters, maxNewTokens: Int, prefillHere: Bool = false
    ) async throws -> Outcome {
        let stream = try await openDecode(openRequest(id, prompt: prompt, parameters: parameters, maxNewTokens: maxNewTokens, prefillHere: prefillHere))
        #expect(stream.status == 200, "OpenDecode answered \(stream.status): \(String(decoding: stream.body, as: UTF8.self))")
        var outcome = Outcome()
        var submission: Task<NodeResponse, any Error>?
        for try await bytes in stream.messages {
            let event = try Baton_V1_DecodeEvent(serializedBytes: bytes)
            switch event.event {
            case .opened:
                outcome.opened = true
                if !prefillHere {
                    let request = prefillRequest(id, prompt: prompt, parameters: parameters)
                    submission = Task { try await self.submitPrefill(request) }
                }
            case .token(let token): outcome.tokens.append(token.token)
            case .finished(let finished): outcome.finished = finished
            case .failure(let failure): outcome.failure = failure
            case nil: Issue.record("an empty DecodeEvent")
            }
        }
        if let submission {
            let response = try await submission.value
            #expect(response.status == 200, "SubmitPrefill answered \(response.status): \(response.bodyText)")
            if response.status == 200 { outcome.prefill = try Baton_V1_SubmitPrefillResponse(serializedBytes: response.body) }
        }
        return outcome
    }

    /// Waits (at most 10 s) until `condition` holds.
    func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("not within 10 s: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// The JSON error body of a non-200 answer.
func errorCode(_ body: [UInt8]) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
    return object["code"] as? String
}
