import Testing

@testable import Worker

/// The life of one generation a draining decode worker offered to move: it settles once, whatever comes after.
@Suite("Drain move")
struct DrainMoveTests {
    static let start = ContinuousClock.now
    static let deadline = start + .seconds(10)

    @Test("an offer shipped and confirmed has moved; nothing after changes that")
    func shippedMoves() {
        var move = DrainMove(deadline: Self.deadline)
        #expect(move.decision == nil)
        #expect(move.ship(to: "decode-1", at: Self.start) == nil)
        #expect(move.state == .shipping(target: "decode-1"))
        #expect(move.keep("the router went away") == nil, "a shipment under way is not cut short")
        #expect(move.expire(at: Self.deadline + .seconds(1)) == nil, "nor by the deadline: the transfer has its own bounds")
        #expect(move.ship(to: "decode-2", at: Self.start) == "it is already moving to decode-1")
        #expect(move.shipped() == .moved(target: "decode-1"))
        #expect(move.shipFailed("late") == nil)
        #expect(move.decision == .moved(target: "decode-1"))
        #expect(move.ship(to: "decode-2", at: Self.start) == "it moved to decode-1 already")
    }

    @Test("a failed shipment keeps the generation here, naming the target and the cause")
    func failedShipmentKeeps() {
        var move = DrainMove(deadline: Self.deadline)
        _ = move.ship(to: "decode-1", at: Self.start)
        #expect(move.shipFailed("connection reset") == .kept(reason: "moving it to decode-1 failed: connection reset"))
        #expect(move.shipped() == nil)
        #expect(move.ship(to: "decode-2", at: Self.start)?.hasPrefix("it goes on here") == true)
    }

    @Test("with nowhere to go, or no word before the deadline, it goes on here")
    func keptOrExpired() {
        var kept = DrainMove(deadline: Self.deadline)
        #expect(kept.keep("no room elsewhere") == .kept(reason: "no room elsewhere"))
        #expect(kept.keep("again") == nil)

        var expired = DrainMove(deadline: Self.deadline)
        #expect(expired.expire(at: Self.start + .seconds(9)) == nil, "not before the deadline")
        #expect(expired.expire(at: Self.deadline) == .kept(reason: "no move came within the drain's move timeout"))

        var late = DrainMove(deadline: Self.deadline)
        #expect(late.ship(to: "decode-1", at: Self.deadline) == "its move offer expired; it goes on here")
        #expect(late.decision == .kept(reason: "no move came within the drain's move timeout"))
    }
}
