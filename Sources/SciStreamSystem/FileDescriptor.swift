#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor that this value owns: it is closed exactly once, by `close()` or, on
/// any other path (an early return, a thrown error), when the value goes away. It cannot be
/// copied, so no second owner can close it again or use it after the close; and it is
/// deliberately not `Sendable`: one task uses a descriptor.
///
/// Every call retries on EINTR and throws `Errno`, read on the line right after the failing call.
public struct FileDescriptor: ~Copyable {
    /// The raw descriptor, for calls this type does not wrap. Valid while the value lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (an open descriptor).
    public init(adopting rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        _ = Glibc.close(rawValue)
    }

    /// Opens `path` with `flags` (O_CLOEXEC is always added: a spawned proxy must not inherit it)
    /// and, when `flags` has O_CREAT, `permissions` for a new file.
    public static func open(_ path: String, _ flags: Int32, permissions: mode_t = 0o600) throws(Errno) -> FileDescriptor {
        let fd = try retryingInterrupts { Glibc.open(path, flags | O_CLOEXEC, permissions) }
        return FileDescriptor(adopting: fd)
    }

    /// Reads at most `buffer.count` bytes; 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retryingInterrupts { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads to end of file. Throws `Errno(EFBIG)` ("File too large") once more than `limit`
    /// bytes have arrived, without reading the rest.
    public func readAll(limit: Int) throws(Errno) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(65536, limit + 1))
        while true {
            // withUnsafeMutableBytes rethrows untyped: carry the Errno out in a Result.
            let count = try chunk.withUnsafeMutableBytes { buffer in Result { () throws(Errno) in try read(into: buffer) } }.get()
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > limit { throw Errno(EFBIG) }
        }
    }

    /// Writes some of `buffer`; returns how many bytes were written.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try retryingInterrupts { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes every byte of `bytes`, looping over short writes.
    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        try bytes.withUnsafeBytes { all in
            Result { () throws(Errno) in
                var offset = 0
                while offset < all.count {
                    offset += try write(UnsafeRawBufferPointer(rebasing: all[offset...]))
                }
            }
        }.get()
    }

    /// fsync(2): the file's data and metadata are on disk.
    public func sync() throws(Errno) {
        _ = try retryingInterrupts { fsync(rawValue) }
    }

    /// fstat(2).
    public func status() throws(Errno) -> stat {
        var info = stat()
        _ = try retryingInterrupts { fstat(rawValue, &info) }
        return info
    }

    /// fchmod(2).
    public func setPermissions(_ mode: mode_t) throws(Errno) {
        _ = try retryingInterrupts { fchmod(rawValue, mode) }
    }

    /// flock(2) without waiting: true if the lock was taken, false if another descriptor holds one.
    public func tryLock(exclusive: Bool = true) throws(Errno) -> Bool {
        do {
            _ = try retryingInterrupts { flock(rawValue, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) }
            return true
        } catch {
            if error == .wouldBlock { return false }
            throw error
        }
    }

    /// Closes the descriptor, reporting the error a close can carry (a delayed write error on some
    /// file systems). Never retried: on Linux the descriptor is released even when close fails
    /// with EINTR, and a retry could close a descriptor another thread has just opened.
    public consuming func close() throws(Errno) {
        let fd = rawValue
        discard self
        if Glibc.close(fd) != 0 {
            let error = Errno.current
            if error != .interrupted { throw error }
        }
    }
}
