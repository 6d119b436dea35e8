#if canImport(Glibc)
import Glibc
#endif

/// Unix-domain stream sockets: s2cs's local admin channel (`--admin-socket`), which only users who
/// can open the socket file (mode 0600: s2cs's own user, and root) reach.
extension Socket {
    /// The longest path a `sockaddr_un` holds (107 bytes on Linux, with the terminating NUL).
    public static let maxUnixPathLength = MemoryLayout<sockaddr_un>.size - MemoryLayout<sa_family_t>.size - 1

    private static func unixAddress(_ path: String) throws(Errno) -> sockaddr_un {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxUnixPathLength, !bytes.contains(0) else { throw Errno.nameTooLong }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }

    /// A listening socket at `path`, created with `mode` (the umask is set around bind, so the file
    /// never exists with wider permissions). A stale socket file at `path` is replaced; any other
    /// file there is left alone and the error is EADDRINUSE.
    public static func listenUnix(path: String, mode: mode_t = 0o600) throws(Errno) -> Socket {
        var address = try unixAddress(path)
        var status = stat()
        if lstat(path, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFSOCK else { throw Errno.addressInUse }
            _ = unlink(path)
        }
        let fd = try retryingInterrupts {
            Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let socket = Socket(adopting: fd)
        let previous = umask(~mode & 0o777)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindError = Errno.current
        umask(previous)
        if bound != 0 { throw bindError }
        if Glibc.listen(fd, 64) != 0 { throw Errno.current }
        return socket
    }

    /// A connection to the Unix-domain socket at `path` (local: it completes or fails at once).
    public static func connectUnix(path: String) throws(Errno) -> Socket {
        var address = try unixAddress(path)
        let fd = try retryingInterrupts {
            Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let socket = Socket(adopting: fd)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if connected != 0 { throw Errno.current }
        // Non-blocking from here on, as every Socket is for the reactor.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return socket
    }
}
