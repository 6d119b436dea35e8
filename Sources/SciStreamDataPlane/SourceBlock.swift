import SciStreamSystem

/// A numeric address block a session's listeners accept connections from (`192.0.2.0/24`, `::1/128`):
/// the address with its host bits cleared, and the prefix length. Valid by construction, so its
/// text can go into a proxy config as it is.
public struct SourceBlock: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), the bits past `prefix` zero.
    public let network: [UInt8]
    public let prefix: Int

    /// Nil unless `address` is 4 or 16 bytes and `prefix` fits it.
    public init?(address: [UInt8], prefix: Int) {
        guard address.count == 4 || address.count == 16, prefix >= 0, prefix <= address.count * 8 else { return nil }
        var remaining = prefix
        network = address.map { byte in
            let bits = min(8, max(0, remaining))
            remaining -= 8
            return byte & UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
        self.prefix = prefix
    }

    public var isIPv4: Bool { network.count == 4 }

    public var description: String {
        // safe to default: `network` is 4 or 16 bytes (checked in init), which inet_ntop always renders
        "\(NumericAddress.text(network) ?? "?")/\(prefix)"
    }
}
