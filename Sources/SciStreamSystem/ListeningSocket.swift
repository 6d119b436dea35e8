#if canImport(Glibc)
import Glibc
#endif
import CSciStream

/// A TCP socket in LISTEN state: its local address (4 bytes for IPv4, 16 for IPv6, network order),
/// port, and inode (a process's /proc/<pid>/fd links to its sockets read "socket:[inode]").
public struct ListeningSocket: Hashable, Sendable {
    public let address: [UInt8]
    public let port: UInt16
    public let inode: UInt64

    public init(address: [UInt8], port: UInt16, inode: UInt64) {
        self.address = address
        self.port = port
        self.inode = inode
    }

    /// The TCP sockets, IPv4 and IPv6, in LISTEN state with a local port in `ports`, in this
    /// network namespace. The kernel filters by state and port (netlink sock_diag), so the cost
    /// does not grow with the machine's other sockets, such as tens of thousands in TIME_WAIT.
    public static func find(ports: ClosedRange<UInt16>) throws(Errno) -> [ListeningSocket] {
        try find(family: AF_INET, ports: ports) + find(family: AF_INET6, ports: ports)
    }

    static func find(family: Int32, ports: ClosedRange<UInt16>) throws(Errno) -> [ListeningSocket] {
        var capacity = 64
        while true {
            var entries = [scistream_listener](repeating: scistream_listener(), count: capacity)
            let count = Int(scistream_tcp_listeners(family, ports.lowerBound, ports.upperBound, &entries, Int32(capacity)))
            if count < 0 { throw Errno(Int32(-count)) }
            if count > capacity {
                capacity = count + 16  // more appeared than fitted: ask again with room for them
                continue
            }
            let length = family == AF_INET6 ? 16 : 4
            return entries.prefix(count).map { entry in
                let address = withUnsafeBytes(of: entry.address) { Array($0.prefix(length)) }
                return ListeningSocket(address: address, port: entry.port, inode: UInt64(entry.inode))
            }
        }
    }
}
