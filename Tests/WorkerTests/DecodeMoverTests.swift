import ClusterProtocol
import Foundation
import Generation
import Inference
import KVTransport
import Logging
import RPC
import Testing
import Worker

extension SharedFixtureSuites {
    /// A draining decode worker moves a generation, KV and all, to another decode worker over the real routes and
    /// the KV transport, driven as the router drives it: `moving`, OpenDecode `moved` on the target, `MoveDecode`.
    @Suite("Decode mover", .serialized)
    struct DecodeMoverTests {
        static let seeded = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, seed: 77)

        /// A second decode worker beside a `WorkerPair`, and the router's connection to it.
        final class Target: @unchecked Sendable {
            let node: WorkerNode
            let client: NodeClient
            private let running: Task<Void, any Error>

            init(fixture: HandoffFixture) async throws {
                var logger = Logger(label: "test.worker")
                logger.logLevel = .warning
                var settings = WorkerNode.Configuration(
                    name: "decode-1", roles: [.decode], threads: 2, context: HandoffFixture.context, listenHost: "127.0.0.1",
                    listenPort: 0, transport: KVTransportConfiguration(tls: try WorkerPair.tls("decode-1", [.decode])))
                settings.kvBlocks = 64
                settings.drainTimeout = .seconds(5)
                node = try await WorkerNode(model: fixture.model, tokenizer: fixture.tokenizer, configuration: settings, logger: logger)
                running = Task { [node] in try await node.run() }
                client = try await NodeClient.connect(
                    host: "127.0.0.1", port: node.port, tls: try WorkerPair.tls("router", [.router]),
                    expecting: .node("decode-1", as: .decode))
            }

            func close() async {
                await client.close()
                running.cancel()
                _ = await running.result
            }
        }

        /// Reads a decode stream's events up to `moving` (or its end); returns the tokens, and the moving event.
        static func readUntilMoving(
            _ events: inout AsyncThrowingStream<[UInt8], any Error>.Iterator, state: inout GenerationState, drainAfter: Int,
            _ drain: () -> Void
        ) async throws -> Baton_V1_DecodeMoving? {
            while let bytes = try await events.next() {
                switch try Baton_V1_DecodeEvent(serializedBytes: bytes).event {
                case .token(let token):
                    state.append(GeneratedToken(proto: token))
                    if state.generated.count == drainAfter { drain() }
                case .moving(let moving): return moving
                case .opened: continue
                case let other: Issue.record("unexpected event before moving: \(String(describing: other))")
                }
            }
            return nil
        }

        static func moveRequest(_ id: String, to target: (name: String, port: Int)?) -> Baton_V1_MoveDecodeRequest {
            var request = Baton_V1_MoveDecodeRequest()
            request.requestID = id
            if let target {
                var address = Baton_V1_WorkerAddress()
                address.host = "127.0.0.1"
                address.port = UInt32(target.port)
                address.name = target.name
                request.decodeWorker = address
            }
            return request
        }

        @Test("a draining decode worker moves a seeded generation to another decode worker, which continues it with the undisturbed tokens and computes nothing")
        func moveOverTransport() async throws {
            let fixture = try HandoffFixture.get()
            let state = HandoffFixture.state("move-me", fixture.prompt, Self.seeded, maxTokens: 40)
            let keptState = HandoffFixture.state("keep-me", fixture.prompt, .greedy, maxTokens: 24)
            // Decode-only workers run the prompt through decode steps, as this reference does.
            let reference = try fixture.decodeWorker()
            let expected = try await collect(try await reference.scheduler.generate(state)).tokens.map(\.id)
            let expectedKept = try await collect(try await reference.scheduler.generate(keptState)).tokens.map(\.id)
            reference.scheduler.shutdown()

            let pair = try await WorkerPair()
            let target = try await Target(fixture: fixture)
            defer {
                Task {
                    await pair.close()
                    await target.close()
                }
            }
            var open = pair.openRequest(state, prefillHere: true)
            open.movable = true
            var openKept = pair.openRequest(keptState, prefillHere: true)
            openKept.movable = true
            let source = try await pair.openDecode(open)
            let kept = try await pair.openDecode(openKept)
            #expect(source.status == 200 && kept.status == 200)
            var events = source.messages.makeAsyncIterator()
            var keptEvents = kept.messages.makeAsyncIterator()

            // SIGTERM's drain: refuse new work, park movable generations.
            var taken = state
            let moving = try #require(
                try await Self.readUntilMoving(&events, state: &taken, drainAfter: 3) {
                    pair.decodeService.startDraining()
                    pair.scheduler.parkMovable()
                })
            #expect(moving.generatedTokens == UInt32(taken.generated.count), "every token came before the pause")
            #expect(moving.deadlineMs == 10_000)
            var keptTaken = keptState
            let keptMoving = try #require(try await Self.readUntilMoving(&keptEvents, state: &keptTaken, drainAfter: -1) {})
            #expect(keptMoving.generatedTokens == UInt32(keptTaken.generated.count))

            // The router opens it on the target with `moved`: KV from decode-0 only.
            var moved = Baton_V1_OpenDecodeRequest()
            moved.state = taken.proto
            moved.moved = true
            moved.prefillWorker = "decode-0"
            let opened = try await target.client.stream(
                BatonProtocol.WorkerControl.openDecode, body: try moved.serializedBytes(), idleTimeout: .seconds(20))
            #expect(opened.status == 200)
            var targetEvents = opened.messages.makeAsyncIterator()
            guard case .opened = try Baton_V1_DecodeEvent(serializedBytes: try #require(try await targetEvents.next())).event else {
                Issue.record("the target did not open the moved generation")
                return
            }

            // An unknown request, and a move to a worker that holds no reservation for it, are refused.
            let unknown = try await pair.decodeClient.call(
                BatonProtocol.WorkerControl.moveDecode, body: try Self.moveRequest("nobody", to: ("decode-1", target.node.port)).serializedBytes(),
                contentType: "application/x-protobuf", timeout: .seconds(30))
            #expect(unknown.status == 404)

            let response = try await pair.decodeClient.call(
                BatonProtocol.WorkerControl.moveDecode, body: try Self.moveRequest("move-me", to: ("decode-1", target.node.port)).serializedBytes(),
                contentType: "application/x-protobuf", timeout: .seconds(30))
            #expect(response.status == 200, "\(response.bodyText)")
            let result = try Baton_V1_MoveDecodeResponse(serializedBytes: response.body)
            #expect(result.moved)
            #expect(result.kvTokens == UInt32(fixture.prompt.count + taken.generated.count - 1))
            #expect(result.kvBytesSent > 0)
            // The source's stream ends without a word more.
            #expect(try await events.next() == nil)

            var rest: [Int32] = []
            var finished: Baton_V1_DecodeFinished?
            while let bytes = try await targetEvents.next() {
                switch try Baton_V1_DecodeEvent(serializedBytes: bytes).event {
                case .token(let token): rest.append(token.token)
                case .finished(let end): finished = end
                case let other: Issue.record("unexpected event: \(String(describing: other))")
                }
            }
            #expect(taken.generated + rest == expected)
            #expect(finished?.completionTokens == UInt32(expected.count))
            #expect(finished?.kvBytes == result.kvBytesSent)
            let targetLoad = try #require(target.node.scheduler).load
            #expect(targetLoad.promptTokens == 0, "the target computed no prompt token")
            #expect(targetLoad.movedHere == 1)
            #expect(pair.decodeService.mover?.tally.moved == 1)

            // No target: the other generation goes on at the draining worker, with its undisturbed tokens.
            let keep = try await pair.decodeClient.call(
                BatonProtocol.WorkerControl.moveDecode, body: try Self.moveRequest("keep-me", to: nil).serializedBytes(),
                contentType: "application/x-protobuf", timeout: .seconds(30))
            #expect(keep.status == 200)
            #expect(try Baton_V1_MoveDecodeResponse(serializedBytes: keep.body).moved == false)
            while let bytes = try await keptEvents.next() {
                if case .token(let token) = try Baton_V1_DecodeEvent(serializedBytes: bytes).event {
                    keptTaken.append(GeneratedToken(proto: token))
                }
            }
            #expect(keptTaken.generated == expectedKept)
            #expect(await pair.decodeService.waitUntilIdle(timeout: .seconds(10)))
            #expect(try await allFree(pair.scheduler))
            #expect(pair.decodeService.mover?.tally.kept == 1)
        }
    }
}
