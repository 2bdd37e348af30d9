import Foundation
import Generation
import Testing

@testable import Inference

/// A draining worker's generations pause (`parkMovable`) and either move, KV and all, to another scheduler
/// (`PromptSource.moved`) or go on where they were: the tokens are the undisturbed run's either way.
@Suite("Decode scheduler: moving generations", .serialized)
struct DecodeSchedulerMoveTests {
    typealias Support = DecodeSchedulerTests

    static let prompt = "The old clockmaker wound every clock on the wall, and the children came to listen. One day"

    /// Reads `stream` until it parks, asking `scheduler` to park once `after` tokens were read. Returns the tokens
    /// read and the departure.
    static func readUntilParked(
        _ stream: GenerationStream, on scheduler: DecodeScheduler, after: Int
    ) async throws -> ([Int32], DecodeScheduler.KVDeparture) {
        var ids: [Int32] = []
        do {
            for try await event in stream {
                switch event {
                case .token(let token):
                    ids.append(token.id)
                    if ids.count == after { scheduler.parkMovable() }
                case .finished:
                    throw InferenceError(.invalidArgument, "the generation finished before it parked")
                }
            }
        } catch let parked as DecodeScheduler.Parked {
            return (ids, parked.departure)
        }
        throw InferenceError(.invalidArgument, "the stream ended without parking")
    }

    /// Copies a departure's KV into an arrival, layer by layer, as a transport does.
    static func ship(_ departure: DecodeScheduler.KVDeparture, to arrival: DecodeScheduler.KVArrival) throws {
        let layers = try departure.beginShipping()
        for (layer, blocks) in layers.enumerated() {
            var bytes: [UInt8] = []
            for block in blocks { bytes += block }
            try bytes.withUnsafeBytes { try arrival.receiveLayer(layer, bytes: $0) }
        }
        try arrival.complete(logits: [])
        departure.shipped()
    }

    @Test(
        "a generation parked on one scheduler and moved with its KV continues on another with the undisturbed tokens, computing nothing again",
        arguments: [Float(0), 0.9])
    func moveEqualsUndisturbed(temperature: Float) async throws {
        let from = try Support.scheduler()
        let to = try Support.scheduler(prefill: false)
        defer {
            from.shutdown()
            to.shutdown()
        }
        let prompt = try Support.prompt(Self.prompt)
        let state = Support.state(prompt, id: "move", maxTokens: 40, temperature: temperature, seed: 99)
        let undisturbed = try await Support.ids(from, state)
        #expect(undisturbed.count == 40)

        let stream = try await from.open(state, prompt: .computeHere, movable: true)
        let (before, departure) = try await Self.readUntilParked(stream, on: from, after: 3)
        #expect(departure.state.generated == before, "every token was sent before the pause")
        #expect(before == Array(undisturbed.prefix(before.count)))
        #expect(departure.tokenCount == prompt.count + before.count - 1, "the last generated token is fed by the next step")
        #expect(departure.state.random == nil || temperature > 0)

        // Refused: a moved state without generated tokens, and KV of the wrong length.
        let empty = await #expect(throws: GenerationError.self) {
            _ = try await to.open(state, prompt: .moved(timeout: .seconds(30)))
        }
        #expect(empty?.code == .invalidArgument)
        let moved = try await to.open(departure.state, prompt: .moved(timeout: .seconds(30)), movable: true)
        let wrongLength = #expect(throws: InferenceError.self) {
            _ = try to.beginArrival(requestID: "move", tokenCount: prompt.count, transport: "test")
        }
        #expect(wrongLength != nil)
        let arrival = try to.beginArrival(requestID: "move", tokenCount: departure.tokenCount, transport: "test")
        try Self.ship(departure, to: arrival)

        let (rest, summary) = try await Support.collect(moved)
        #expect(before + rest.map(\.id) == undisturbed)
        #expect(summary.completionTokens == undisturbed.count)
        #expect(summary.promptTokens == prompt.count)
        #expect(summary.handoff?.transport == "test")
        #expect(to.load.promptTokens == 0, "the target computed no prompt token")
        #expect(to.load.movedHere == 1)
        #expect(await Support.allFree(from), "the source freed the moved generation's KV")
        #expect(from.load.movedAway == 1)
        #expect(await Support.allFree(to))
    }

    @Test("a parked generation resumed where it was gives the undisturbed tokens and is not parked again")
    func resumeHere() async throws {
        let scheduler = try Support.scheduler()
        defer { scheduler.shutdown() }
        let state = Support.state(try Support.prompt(Self.prompt), id: "stay", maxTokens: 30, temperature: 0.8, seed: 5)
        let undisturbed = try await Support.ids(scheduler, state)

        let stream = try await scheduler.open(state, prompt: .computeHere, movable: true)
        let (before, departure) = try await Self.readUntilParked(stream, on: scheduler, after: 2)
        let resumed = try departure.resume()
        #expect(throws: InferenceError.self) { _ = try departure.resume() }
        let (rest, summary) = try await Support.collect(resumed)
        #expect(before + rest.map(\.id) == undisturbed)
        #expect(summary.completionTokens == undisturbed.count)
        #expect(await Support.allFree(scheduler))

        // A generation not opened movable never parks, even while the scheduler parks.
        #expect(try await Support.ids(scheduler, Support.state(state.request.prompt, id: "fixed", maxTokens: 30, temperature: 0.8, seed: 5)) == undisturbed)
    }

    @Test("a parked generation keeps its KV while a transport reads it, and frees it once cancelled and no longer read")
    func cancelParked() async throws {
        let from = try Support.scheduler()
        defer { from.shutdown() }
        let state = Support.state(try Support.prompt(Self.prompt), id: "gone", maxTokens: 30)
        let stream = try await from.open(state, prompt: .computeHere, movable: true)
        let (_, departure) = try await Self.readUntilParked(stream, on: from, after: 2)
        let layers = try departure.beginShipping()
        #expect(layers.count == from.layout.layers)
        #expect(layers[0].reduce(0) { $0 + $1.count } == KVSequenceDescriptor(layout: from.layout, tokenCount: departure.tokenCount).layerByteCount)
        #expect(throws: InferenceError.self) { _ = try departure.beginShipping() }
        #expect(throws: InferenceError.self) { _ = try departure.resume() }

        departure.cancel(reason: "the router went away")
        try await Task.sleep(for: .milliseconds(100))
        #expect(from.load.freeBlocks < from.load.totalBlocks, "blocks a transport reads are not reused")
        departure.shippingFailed()
        #expect(await Support.allFree(from))
        #expect(from.load.cancelled >= 1)
        #expect(from.load.movedAway == 0)
    }
}
