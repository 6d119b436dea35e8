#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CSciStream

/// A failure to resolve a host name.
public struct ResolveError: Error, CustomStringConvertible, Sendable {
    public let host: String
    public let reason: String
    public var description: String { "cannot resolve host '\(host)': \(reason)" }
}

/// An IPv4 or IPv6 socket address.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public var storage: sockaddr_storage
    public var length: socklen_t

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return UInt16(bigEndian: raw.load(fromByteOffset: MemoryLayout<sockaddr_in6>.offset(of: \.sin6_port)!, as: UInt16.self))  // safe: stored property
            }
            return UInt16(bigEndian: raw.load(fromByteOffset: MemoryLayout<sockaddr_in>.offset(of: \.sin_port)!, as: UInt16.self))  // safe: stored property
        }
    }

    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!  // safe: stored property
                _ = inet_ntop(AF_INET6, raw.baseAddress! + offset, &buffer, socklen_t(buffer.count))  // safe: non-empty buffer
            } else {
                let offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!  // safe: stored property
                _ = inet_ntop(AF_INET, raw.baseAddress! + offset, &buffer, socklen_t(buffer.count))  // safe: non-empty buffer
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A non-blocking, close-on-exec TCP socket. Owned by one task at a time; `close` is guarded by a
/// mutex so that it is idempotent and safe from any thread.
public final class Socket: ByteStream, @unchecked Sendable {  // fd state behind `descriptor` (Mutex)
    private let descriptor: Mutex<Int32>

    public init(adopting fd: Int32) { descriptor = Mutex(fd) }
    deinit { close() }

    /// The descriptor, or -1 once closed.
    public var fd: Int32 { descriptor.withLock { $0 } }

    public func close() {
        let fd = descriptor.withLock { fd -> Int32 in
            let old = fd
            fd = -1
            return old
        }
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// Shuts both directions down, from any task: the owner's pending read or write wakes up and
    /// sees the end of the connection, and closes it. Under the same lock as `close`, so that a
    /// descriptor number already closed (and perhaps reused) is never touched.
    public func shutdown() {
        descriptor.withLock { fd in
            if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private static func make(family: Int32) throws(Errno) -> Socket {
        let fd = try retryingInterrupts {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        return Socket(adopting: fd)
    }

    /// A listening socket on `address` with SO_REUSEADDR. Port 0 picks a free port (`localAddress` tells which).
    /// `prepare`, when given, runs on the bound socket before it listens (a socket filter set there
    /// judges the very first connection).
    public static func listen(on address: SocketAddress, backlog: Int32 = 1024,
                              prepare: ((Int32) throws(Errno) -> Void)? = nil) throws(Errno) -> Socket {
        let socket = try make(family: address.family)
        var one: Int32 = 1
        _ = setsockopt(socket.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = address.storage
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.fd, $0, address.length) }
        }
        if bound != 0 { throw Errno.current }
        try prepare?(socket.fd)
        if Glibc.listen(socket.fd, backlog) != 0 { throw Errno.current }
        return socket
    }

    /// Whether a TCP listener could bind `host:port` now (binds and closes at once).
    public static func canBind(host: String, port: UInt16) -> Bool {
        guard let address = try? SocketAddress.resolve(host: host, port: port) else { return false }
        return bindError(address) == nil
    }

    /// The one check of whether a proxy could listen on `address`: why binding it fails, or nil.
    /// It binds as the proxies do (SO_REUSEADDR, IPv6 only for IPv6), so that a port held only by
    /// connections in TIME_WAIT counts as free and one with a listener or a live socket does not.
    public static func bindError(_ address: SocketAddress) -> Errno? {
        let fd = Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return Errno.current }
        defer { _ = Glibc.close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var storage = address.storage
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, address.length) }
        }
        return result == 0 ? nil : Errno.current
    }

    public var localAddress: SocketAddress? {
        var address = SocketAddress(storage: sockaddr_storage(), length: socklen_t(MemoryLayout<sockaddr_storage>.size))
        let status = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &address.length) }
        }
        return status == 0 ? address : nil
    }

    public var peerAddress: SocketAddress? {
        var address = SocketAddress(storage: sockaddr_storage(), length: socklen_t(MemoryLayout<sockaddr_storage>.size))
        let status = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &address.length) }
        }
        return status == 0 ? address : nil
    }

    /// Accepts one connection, suspending until one arrives. The new socket is non-blocking and close-on-exec.
    public func accept() async throws -> Socket {
        while true {
            let listener = fd
            guard listener >= 0 else { throw Errno.badFileDescriptor }
            let client = scistream_accept4_nonblock_cloexec(listener)
            if client >= 0 {
                var one: Int32 = 1
                _ = setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return Socket(adopting: client)
            }
            let error = Errno.current
            switch error.rawValue {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EAGAIN, EWOULDBLOCK:
                try await Reactor.shared.wait(listener, for: .readable)
            default:
                // Including EMFILE/ENFILE (out of descriptors): the caller logs it, backs off and retries.
                throw error
            }
        }
    }

    /// Connects to `address` (from `source`, port 0, when given), suspending until connected, refused,
    /// or the deadline passes.
    public static func connect(to address: SocketAddress, from source: SocketAddress? = nil,
                               deadline: ContinuousClock.Instant? = nil) async throws -> Socket {
        let socket = try make(family: address.family)
        if var local = source?.storage, let length = source?.length {
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(socket.fd, $0, length) }
            }
            if bound != 0 { throw Errno.current }
        }
        var storage = address.storage
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket.fd, $0, address.length) }
        }
        if status != 0 {
            let error = Errno.current
            guard error == .inProgress || error == .interrupted else { throw error }
            try await Reactor.shared.wait(socket.fd, for: .writable, deadline: deadline)
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(socket.fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError != 0 { throw Errno(soError) }
        }
        var one: Int32 = 1
        _ = setsockopt(socket.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return socket
    }

    public func read(max: Int, deadline: ContinuousClock.Instant? = nil) async throws(StreamError) -> [UInt8] {
        try await receiving(max: max, flags: 0, deadline: deadline)
    }

    /// recv(2) with `flags`, suspending on EAGAIN until the socket is readable or the deadline passes.
    private func receiving(max: Int, flags: Int32, deadline: ContinuousClock.Instant?) async throws(StreamError) -> [UInt8] {
        while true {
            let fd = self.fd
            guard fd >= 0 else { throw StreamError(socket: Errno.badFileDescriptor) }
            switch Self.receive(fd, max: max, flags: flags) {
            case .bytes(let bytes):
                return bytes
            case .failed(.interrupted):
                continue
            case .failed(.wouldBlock):
                try await waitUntilReady(fd, for: .readable, deadline: deadline)
            case .failed(let error):
                throw StreamError(socket: error)
            }
        }
    }

    /// The reactor's wait, its failures (the deadline, cancellation) as stream errors.
    private func waitUntilReady(_ fd: Int32, for event: IOEvent, deadline: ContinuousClock.Instant?) async throws(StreamError) {
        do {
            try await Reactor.shared.wait(fd, for: event, deadline: deadline)
        } catch {
            throw StreamError(socket: error)
        }
    }

    enum Received {
        case bytes([UInt8])
        case failed(Errno)
    }

    /// One recv(2) into a buffer that exists only for the call: a task that then waits for the socket
    /// to become readable holds no buffer (a server has thousands of idle connections waiting so).
    static func receive(_ fd: Int32, max: Int, flags: Int32) -> Received {
        var failure: Errno? = nil
        let bytes = [UInt8](unsafeUninitializedCapacity: max) { buffer, initialized in
            let count = recv(fd, buffer.baseAddress, max, flags)
            if count >= 0 {
                initialized = count
            } else {
                failure = Errno.current
                initialized = 0
            }
        }
        if let failure { return .failed(failure) }
        return .bytes(bytes)
    }

    public func writeAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant? = nil) async throws(StreamError) {
        var offset = 0
        while offset < bytes.count {
            let fd = self.fd
            guard fd >= 0 else { throw StreamError(socket: Errno.badFileDescriptor) }
            let count = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))  // safe: offset < count, so non-empty
            }
            if count >= 0 {
                offset += count
                continue
            }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock {
                try await waitUntilReady(fd, for: .writable, deadline: deadline)
                continue
            }
            throw StreamError(socket: error)
        }
    }
}

extension Socket {
    /// Waits for data and returns up to `max` bytes without consuming them (MSG_PEEK); [] at EOF.
    public func peek(max: Int, deadline: ContinuousClock.Instant? = nil) async throws(StreamError) -> [UInt8] {
        try await receiving(max: max, flags: Int32(MSG_PEEK), deadline: deadline)
    }
}
