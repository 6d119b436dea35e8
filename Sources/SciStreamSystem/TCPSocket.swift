#if canImport(Glibc)
import Glibc
#endif
import CSciStream

/// A TCP socket of this network namespace, as the kernel lists it: its local address (4 bytes for
/// IPv4, 16 for IPv6, network order), port, state, and inode (a process's /proc/<pid>/fd links to
/// its sockets read "socket:[inode]").
public struct TCPSocket: Hashable, Sendable {
    public enum State: UInt8, Sendable {
        case established = 1
        case listen = 10
    }

    public let address: [UInt8]
    public let port: UInt16
    public let state: State
    public let inode: UInt64

    public init(address: [UInt8], port: UInt16, state: State, inode: UInt64) {
        self.address = address
        self.port = port
        self.state = state
        self.inode = inode
    }

    /// The TCP sockets, IPv4 and IPv6, in one of `states` with a local port in `ports`. The kernel
    /// filters by state and port (netlink sock_diag), so the cost does not grow with the machine's
    /// other sockets, such as tens of thousands in TIME_WAIT: never a read of /proc/net/tcp.
    public static func find(_ states: [State], ports: ClosedRange<UInt16>) throws(Errno) -> [TCPSocket] {
        let mask = states.reduce(UInt32(0)) { $0 | (1 << UInt32($1.rawValue)) }
        return try find(family: AF_INET, states: mask, ports: ports) + find(family: AF_INET6, states: mask, ports: ports)
    }

    static func find(family: Int32, states: UInt32, ports: ClosedRange<UInt16>) throws(Errno) -> [TCPSocket] {
        var capacity = 64
        while true {
            var entries = [scistream_tcp_socket](repeating: scistream_tcp_socket(), count: capacity)
            let count = Int(scistream_tcp_sockets(family, states, ports.lowerBound, ports.upperBound, &entries, Int32(capacity)))
            if count < 0 { throw Errno(Int32(-count)) }
            if count > capacity {
                capacity = count + 16  // more appeared than fitted: ask again with room for them
                continue
            }
            let length = family == AF_INET6 ? 16 : 4
            return entries.prefix(count).compactMap { entry in
                guard let state = State(rawValue: entry.state) else { return nil }
                let address = withUnsafeBytes(of: entry.address) { Array($0.prefix(length)) }
                return TCPSocket(address: address, port: entry.port, state: state, inode: UInt64(entry.inode))
            }
        }
    }
}
