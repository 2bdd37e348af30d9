import Foundation

/// Lets `baton up` take its children down with it even when it dies without cleaning up (SIGKILL, a crash).
enum ParentWatch {
    /// Set by `baton up` in its children's environment: the pid of the `baton up` process.
    static let environmentKey = "BATON_UP_PARENT_PID"

    /// When started by `baton up`, sends this process SIGTERM (its graceful shutdown) once that parent is
    /// gone. Does nothing otherwise.
    static func exitWithParentIfAsked() {
        guard let value = ProcessInfo.processInfo.environment[environmentKey], let parent = Int32(value), parent > 1 else {
            return
        }
        let thread = Thread {
            // Re-parented (to init or a subreaper) means the parent exited.
            while getppid() == parent {
                Thread.sleep(forTimeInterval: 0.5)
            }
            kill(getpid(), SIGTERM)
        }
        thread.name = "baton.parent-watch"
        thread.start()
    }
}
