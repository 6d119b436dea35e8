import Dispatch

/// Runs blocking work (fsync, key generation, fork, /proc scans, name lookups) on threads of its own,
/// so that the cooperative pool (one thread per core: two here) never waits on a disk or the kernel
/// while other sessions' requests, starts and listings wait behind it.
public enum BlockingWork {
    private static let queue = DispatchQueue(label: "scistream.blocking", qos: .userInitiated, attributes: .concurrent)

    /// `body`'s result, computed on a blocking-work thread; the calling task suspends meanwhile.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }
}
