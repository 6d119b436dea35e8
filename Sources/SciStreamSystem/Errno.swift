#if canImport(Glibc)
import Glibc
#endif

/// An error number from a failed system call, with a readable description.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The errno of the calling thread. Read it on the line right after the failing call.
    public static var current: Errno { Errno(errno) }

    public var description: String { String(cString: strerror(rawValue)) }

    public static let interrupted = Errno(EINTR)
    public static let wouldBlock = Errno(EAGAIN)
    public static let inProgress = Errno(EINPROGRESS)
    public static let timedOut = Errno(ETIMEDOUT)
    public static let addressInUse = Errno(EADDRINUSE)
    public static let connectionRefused = Errno(ECONNREFUSED)
    public static let badFileDescriptor = Errno(EBADF)
    public static let brokenPipe = Errno(EPIPE)
    public static let connectionReset = Errno(ECONNRESET)
    public static let nameTooLong = Errno(ENAMETOOLONG)
    public static let noSuchFileOrDirectory = Errno(ENOENT)
    public static let fileExists = Errno(EEXIST)
}

/// Runs a system call that returns -1 on failure, retrying on EINTR, and turns errno into a thrown `Errno`.
@inline(__always)
public func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result == -1 {
            let error = Errno.current
            if error == .interrupted { continue }
            throw error
        }
        return result
    }
}
