#if canImport(Glibc)
import Glibc
#endif

extension SocketAddress {
    /// Every TCP address `host` (a literal IPv4/IPv6 address, bracketed or not, or a name) stands for
    /// with `port`, in getaddrinfo's order: the one call to getaddrinfo in SciStream. A name may
    /// block for seconds on DNS: from async code, call it through `BlockingWork.run`.
    /// `passive`: addresses to bind (a wildcard host stays a wildcard).
    public static func lookup(host: String, port: UInt16, passive: Bool = false) throws(ResolveError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let status = getaddrinfo(bare, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw ResolveError(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(result) }
        var addresses: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let raw = current.pointee.ai_addr, current.pointee.ai_family == AF_INET || current.pointee.ai_family == AF_INET6 {
                addresses.append(SocketAddress(copying: raw, length: current.pointee.ai_addrlen))
            }
            node = current.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw ResolveError(host: host, reason: "no IPv4 or IPv6 address") }
        return addresses
    }

    /// The first address `host` stands for with `port` (`lookup`).
    public static func resolve(host: String, port: UInt16) throws(ResolveError) -> SocketAddress {
        try lookup(host: host, port: port)[0]  // safe: lookup returns at least one or throws
    }

    /// The address's bytes: 4 for IPv4, 16 for IPv6.
    public var addressBytes: [UInt8] {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!  // safe: stored property
                return Array(raw[offset..<offset + 16])
            }
            let offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!  // safe: stored property
            return Array(raw[offset..<offset + 4])
        }
    }

    /// The same address with another port.
    public func with(port: UInt16) -> SocketAddress {
        var copy = self
        withUnsafeMutableBytes(of: &copy.storage) { raw in
            let offset = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.offset(of: \.sin6_port)!  // safe: stored property
                : MemoryLayout<sockaddr_in>.offset(of: \.sin_port)!  // safe: stored property
            raw.storeBytes(of: port.bigEndian, toByteOffset: offset, as: UInt16.self)
        }
        return copy
    }
}
