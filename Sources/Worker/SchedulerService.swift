import Inference
import ServiceLifecycle

/// The decode scheduler's thread as a service: started with the group, stopped at graceful shutdown.
public struct SchedulerService: Service {
    public let scheduler: DecodeScheduler

    public init(_ scheduler: DecodeScheduler) {
        self.scheduler = scheduler
    }

    public func run() async throws {
        scheduler.start()
        try? await gracefulShutdown()
        scheduler.shutdown()
    }
}
