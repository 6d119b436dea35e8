#if canImport(Glibc)
import Glibc
#endif

extension SocketAddress {
    /// A socket address copied from a `sockaddr` of `length` bytes (from getaddrinfo, accept...).
    public init(copying address: UnsafePointer<sockaddr>, length: socklen_t) {
        var storage = sockaddr_storage()
        let count = min(Int(length), MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutableBytes(of: &storage) { dest in
            dest.copyMemory(from: UnsafeRawBufferPointer(start: address, count: count))
        }
        self.init(storage: storage, length: socklen_t(count))
    }
}
