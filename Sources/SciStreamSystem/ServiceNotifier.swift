#if canImport(Glibc)
import Glibc
#endif

/// The service manager's notification socket (`sd_notify(3)`'s protocol, written here: one datagram
/// of `KEY=VALUE` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET`): `READY=1` once s2cs
/// serves, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` at shutdown, `WATCHDOG=1`
/// pings, `STATUS=` text for `systemctl status`. Without `$NOTIFY_SOCKET` (not started by systemd
/// with `Type=notify`) every call does nothing.
public struct ServiceNotifier: Sendable {
    /// The socket's path; an abstract socket's name starts with NUL (given as `@` in the variable).
    private let path: [UInt8]?
    /// Half of `$WATCHDOG_USEC`, when systemd expects pings from this process (`$WATCHDOG_PID`
    /// absent or this pid).
    public let watchdogInterval: Duration?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment` (the edge passes
    /// the process environment in).
    public init(environment: [String: String], pid: Int32 = getpid()) {
        if let name = environment["NOTIFY_SOCKET"], !name.isEmpty, name.utf8.count < 108,
           name.hasPrefix("/") || name.hasPrefix("@") {
            var bytes = Array(name.utf8)
            if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
            path = bytes
        } else {
            path = nil
        }
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == pid } ?? true
        if path != nil, forUs, let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 {
            watchdogInterval = .microseconds(Int64(min(usec / 2, UInt64(Int64.max))))
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends one state message; returns whether it went out (false without a socket, or on error).
    @discardableResult
    public func notify(_ fields: [String: String]) -> Bool {
        guard let path else { return false }
        // Values on one line each: a newline in a STATUS text would start a new field.
        let text = fields.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.replacingOccurrences(of: "\n", with: " "))" }.joined(separator: "\n") + "\n"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path.first == 0 ? 0 : 1))
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), raw, length) }
            }
        }
        return sent == bytes.count
    }

    public func ready(status: String) { notify(["READY": "1", "STATUS": status]) }
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        notify(["RELOADING": "1", "MONOTONIC_USEC": "\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)"])
    }
    public func stopping() { notify(["STOPPING": "1"]) }
    public func status(_ text: String) { notify(["STATUS": text]) }
    public func watchdog() { notify(["WATCHDOG": "1"]) }
}
