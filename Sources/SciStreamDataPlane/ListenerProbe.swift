#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// Readiness and availability of listener addresses, without ever connecting to them: a connect
/// to a CONS listener would open a tunnel connection through to the producer application.
enum ListenerProbe {
    /// Every address `host` resolves to (numeric hosts give one).
    static func addresses(of endpoint: ConfigEndpoint) throws(DataPlaneError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(endpoint.host.bare, String(endpoint.port), &hints, &result)
        guard status == 0, let first = result else {
            throw .listenerUnavailable(session: "", listener: endpoint.description,
                                       reason: "cannot resolve host: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        var addresses: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let raw = current.pointee.ai_addr {
                addresses.append(SocketAddress(copying: raw, length: current.pointee.ai_addrlen))
            }
            node = current.pointee.ai_next
        }
        return addresses
    }

    /// Whether a listener could bind `address` now. Binds with SO_REUSEADDR and does NOT listen,
    /// then closes: such a socket never conflicts with a proxy binding the same address at the
    /// same moment (both have SO_REUSEADDR, neither listens yet), while any socket already
    /// listening there makes the bind fail with EADDRINUSE. Returns the bind error, if any.
    static func bindError(_ address: SocketAddress) -> Errno? {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return Errno.current }
        defer { _ = close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var storage = address.storage
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, address.length) }
        }
        return result == 0 ? nil : Errno.current
    }

    /// A LISTEN socket from /proc/net/tcp or tcp6: its address bytes (4 or 16) and port.
    struct ListeningSocket: Hashable {
        let address: [UInt8]
        let port: UInt16
    }

    /// The TCP sockets in LISTEN state in this network namespace (/proc/net/tcp and tcp6), with
    /// the inodes of the sockets bound there.
    static func listeningSockets() -> [ListeningSocket: Set<UInt64>] {
        var sockets: [ListeningSocket: Set<UInt64>] = [:]
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let bytes = ProcessReaper.readSmallFile(file, limit: 64 << 20) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").dropFirst() {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, fields[3] == "0A" else { continue }  // 0A = TCP_LISTEN
                let local = fields[1].split(separator: ":")
                guard local.count == 2, let port = UInt16(local[1], radix: 16),
                      let address = decodeProcAddress(local[0]), let inode = UInt64(fields[9]) else { continue }
                sockets[ListeningSocket(address: address, port: port), default: []].insert(inode)
            }
        }
        return sockets
    }

    /// The inodes of the sockets that the processes of group `group` hold (/proc/<pid>/fd links
    /// "socket:[inode]"): which LISTEN sockets are the proxy's own.
    static func socketInodes(ofProcessGroup group: Int32) -> Set<UInt64> {
        var inodes = Set<UInt64>()
        for pid in ProcessReaper.members(ofGroup: group) {
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

    /// /proc/net/tcp prints an address as 32-bit words in host byte order, each as 8 hex digits.
    static func decodeProcAddress(_ hex: Substring) -> [UInt8]? {
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let end = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<end], radix: 16) else { return nil }
            withUnsafeBytes(of: word) { bytes.append(contentsOf: $0) }  // native order = the kernel's
            index = end
        }
        return bytes
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
    static func listeners(_ addresses: [SocketAddress], in table: [ListeningSocket: Set<UInt64>]) -> Set<UInt64> {
        var inodes = Set<UInt64>()
        for address in addresses {
            inodes.formUnion(table[ListeningSocket(address: addressBytes(address), port: address.port)] ?? [])
        }
        return inodes
    }

    /// Whether something listens on one of `addresses`.
    static func isListening(_ addresses: [SocketAddress], in table: [ListeningSocket: Set<UInt64>]) -> Bool {
        !listeners(addresses, in: table).isEmpty
    }
}
