#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// Readiness and availability of listener addresses, without ever connecting to them: a connect
/// to a CONS listener would open a tunnel connection through to the producer application.
enum ListenerProbe {
    /// Every address `host` resolves to (numeric hosts give one).
    static func addresses(of endpoint: ConfigEndpoint) throws(DataPlaneError) -> [SocketAddress] {
        do {
            return try SocketAddress.lookup(host: endpoint.host.bare, port: endpoint.port, passive: true)
        } catch {
            throw .listenerUnavailable(session: "", listener: endpoint.description, reason: "cannot resolve host: \(error.reason)")
        }
    }

    /// A listening address: its bytes (4 or 16) and port.
    struct Listener: Hashable {
        let address: [UInt8]
        let port: UInt16
    }

    /// The TCP sockets in LISTEN state on the ports of `addresses` (on any address: `listeners`
    /// picks the exact ones), with the inodes of the sockets bound there. The kernel is asked for
    /// those ports and that state only (netlink sock_diag), so the cost does not grow with the
    /// machine's other sockets (a busy gateway has tens of thousands in TIME_WAIT).
    static func listeningSockets(on addresses: [SocketAddress]) throws(Errno) -> [Listener: Set<UInt64>] {
        guard let low = addresses.map(\.port).min(), let high = addresses.map(\.port).max() else { return [:] }
        var sockets: [Listener: Set<UInt64>] = [:]
        for socket in try TCPSocket.find([.listen], ports: low...high) {
            sockets[Listener(address: socket.address, port: socket.port), default: []].insert(socket.inode)
        }
        return sockets
    }

    /// The inodes of the sockets that the processes of group `group` hold (/proc/<pid>/fd links
    /// "socket:[inode]"): which LISTEN sockets are the proxy's own. By default the group's leader
    /// (the proxy s2cs started) and the processes below it that are in its group, found through the
    /// kernel's lists of children, so that the cost does not grow with the machine's processes (a
    /// gateway with a thousand sessions runs thousands of proxy processes); `everyMember` walks all
    /// of /proc for the group's members instead, wherever they are.
    static func socketInodes(ofProcessGroup group: Int32, everyMember: Bool = false) -> Set<UInt64> {
        var inodes = Set<UInt64>()
        for pid in everyMember ? ProcessReaper.members(ofGroup: group) : tree(ofLeader: group) {
            guard let directory = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(directory) }
            var target = [CChar](repeating: 0, count: 64)
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard Int(name) != nil else { continue }
                let count = readlink("/proc/\(pid)/fd/\(name)", &target, target.count - 1)
                guard count > 9 else { continue }
                let link = String(decoding: target[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard link.hasPrefix("socket:["), link.hasSuffix("]"),
                      let inode = UInt64(link.dropFirst(8).dropLast()) else { continue }
                inodes.insert(inode)
            }
        }
        return inodes
    }

    /// `leader` and every process below it in its process group (/proc/<pid>/task/<tid>/children).
    static func tree(ofLeader leader: Int32) -> [Int32] {
        var found: [Int32] = [], queue = [leader]
        var seen: Set<Int32> = [leader]
        while let pid = queue.popLast() {
            guard let info = ProcessReaper.stat(pid: pid), info.processGroup == leader else { continue }
            found.append(pid)
            guard let tasks = opendir("/proc/\(pid)/task") else { continue }
            defer { closedir(tasks) }
            while let entry = readdir(tasks) {
                let task = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
                guard Int(task) != nil, let text = ProcessReaper.readSmallFile("/proc/\(pid)/task/\(task)/children", limit: 65536) else { continue }
                for child in text.split(separator: UInt8(ascii: " ")).compactMap({ Int32(String(decoding: $0, as: UTF8.self)) })
                where seen.insert(child).inserted {
                    queue.append(child)
                }
            }
        }
        return found
    }

    /// The address bytes of a socket address (4 for IPv4, 16 for IPv6).
    static func addressBytes(_ address: SocketAddress) -> [UInt8] {
        withUnsafeBytes(of: address.storage) { raw in
            if address.family == AF_INET6 {
                let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!  // safe: stored property
                return Array(raw[offset..<offset + 16])
            }
            let offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!  // safe: stored property
            return Array(raw[offset..<offset + 4])
        }
    }

    /// The inodes of the LISTEN sockets on one of `addresses` (exactly: a proxy binds what it is told).
    static func listeners(_ addresses: [SocketAddress], in table: [Listener: Set<UInt64>]) -> Set<UInt64> {
        var inodes = Set<UInt64>()
        for address in addresses {
            inodes.formUnion(table[Listener(address: addressBytes(address), port: address.port)] ?? [])
        }
        return inodes
    }

    /// Whether something listens on one of `addresses`.
    static func isListening(_ addresses: [SocketAddress], in table: [Listener: Set<UInt64>]) -> Bool {
        !listeners(addresses, in: table).isEmpty
    }
}
