#if canImport(Glibc)
import Glibc
#endif

/// The text of a numeric address (4 bytes IPv4, 16 bytes IPv6) in the kernel's own form (`inet_ntop`):
/// the one spelling every proxy config accepts.
public enum NumericAddress {
    public static func text(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        var copy = bytes
        let written = copy.withUnsafeMutableBytes { raw in
            inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        guard written != nil else { return nil }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
