#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// A numeric IPv4 (4 bytes) or IPv6 (16 bytes) address, as the kernel sees it: the form that target
/// policy decides on and that goes into proxy configs, whatever spelling or name it came from.
package struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    package let bytes: [UInt8]

    package init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses a numeric address in the strict forms `inet_pton` accepts (no names, no zone ids,
    /// no shortened or octal IPv4 forms). Brackets around IPv6 are allowed.
    package init?(numeric text: String) {
        let bare = text.hasPrefix("[") && text.hasSuffix("]") ? String(text.dropFirst().dropLast()) : text
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, bare, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    package var isIPv4: Bool { bytes.count == 4 }

    /// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`)
    /// IPv6 address: those reach the IPv4 host, so policy judges them as IPv4. `::` and `::1` are not
    /// IPv4-compatible addresses.
    package var embeddedIPv4: IPAddress? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }) else { return nil }
        let tail = Array(bytes[12..<16])
        if bytes[10] == 0xff && bytes[11] == 0xff { return IPAddress(bytes: tail) }
        if bytes[10] == 0 && bytes[11] == 0 && !(tail[0] == 0 && tail[1] == 0 && tail[2] == 0 && tail[3] <= 1) {
            return IPAddress(bytes: tail)
        }
        return nil
    }

    /// The IPv4 address a NAT64 gateway reaches for an address in the well-known prefix `64:ff9b::/96`
    /// (RFC 6052). Not the same host as `canonical` (a NAT64 gateway is in between): policy judges both.
    package var nat64IPv4: IPAddress? {
        guard bytes.count == 16, bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] else { return nil }
        return IPAddress(bytes: Array(bytes[12..<16]))
    }

    /// The address as policy judges it: the embedded IPv4 address for mapped forms, else itself.
    package var canonical: IPAddress { embeddedIPv4 ?? self }

    /// What per-client caps and quotas count by: an IPv4 address (in any spelling, IPv4-mapped
    /// included) is one client; an IPv6 address counts with its whole /64 (`2001:db8:1:2::/64`), which
    /// one host or one LAN gets and may take any address from. Text that is not an address is its own key.
    package static func clientKey(_ address: String) -> String {
        guard let ip = IPAddress(numeric: address)?.canonical else { return address }
        guard !ip.isIPv4, let prefix = IPAddress(bytes: Array(ip.bytes[0..<8]) + [UInt8](repeating: 0, count: 8)) else { return ip.description }
        return prefix.description + "/64"
    }

    package var description: String { NumericAddress.text(bytes) ?? "?" }

    /// Whether the first `prefix` bits equal those of `network` (same family).
    package func matches(_ network: IPAddress, prefix: Int) -> Bool {
        guard network.bytes.count == bytes.count else { return false }
        var remaining = prefix
        for index in 0..<bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if bytes[index] & mask != network.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }
}

/// An address block with an optional port range: `10.0.0.0/8`, `192.0.2.7:5001`,
/// `198.51.100.0/24:5000-5099`, `[2001:db8::/32]:5001`, `2001:db8::1`.
package struct AddressRule: Equatable, Sendable, CustomStringConvertible {
    package let network: IPAddress
    package let prefix: Int
    package let ports: ClosedRange<UInt16>?

    package init(network: IPAddress, prefix: Int, ports: ClosedRange<UInt16>? = nil) {
        self.network = network
        self.prefix = prefix
        self.ports = ports
    }

    package func contains(_ address: IPAddress, port: UInt16? = nil) -> Bool {
        guard address.matches(network, prefix: prefix) else { return false }
        guard let ports else { return true }
        guard let port else { return false }
        return ports.contains(port)
    }

    package var description: String {
        let block = "\(network)/\(prefix)"
        guard let ports else { return block }
        let portText = ports.lowerBound == ports.upperBound ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
        return network.isIPv4 ? "\(block):\(portText)" : "[\(block)]:\(portText)"
    }

    /// Parses one rule; the message says what is wrong (the caller adds which flag).
    package static func parse(_ text: String, allowPorts: Bool = true) throws(RuleError) -> AddressRule {
        var blockText = Substring(text)
        var portText: Substring? = nil
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw RuleError("'\(text)' has an unclosed '['") }
            blockText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), rest.count > 1 else { throw RuleError("'\(text)': expected ':PORT' or ':PORT-PORT' after ']'") }
                portText = rest.dropFirst()
            }
        } else if text.filter({ $0 == ":" }).count == 1 {
            // IPv4 with a port; IPv6 (several colons) must be bracketed to carry a port.
            let colon = text.firstIndex(of: ":")!  // safe: counted one above
            blockText = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        var prefix: Int? = nil
        var addressText = blockText
        if let slash = blockText.firstIndex(of: "/") {
            let digits = blockText[blockText.index(after: slash)...]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits) else {
                throw RuleError("'\(text)': the prefix length after '/' must be a number")
            }
            prefix = value
            addressText = blockText[..<slash]
        }
        guard let address = IPAddress(numeric: String(addressText)) else {
            throw RuleError("'\(text)' is not an IP address or CIDR block (names are not allowed: use numeric addresses such as 10.0.0.0/8 or [2001:db8::/32])")
        }
        let maxPrefix = address.bytes.count * 8
        let length = prefix ?? maxPrefix
        guard length >= 0, length <= maxPrefix else { throw RuleError("'\(text)': prefix length \(length) is out of range 0-\(maxPrefix)") }
        var ports: ClosedRange<UInt16>? = nil
        if let portText {
            guard allowPorts else { throw RuleError("'\(text)': ports are not allowed here") }
            let bounds = portText.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                  let low = bounds.first.flatMap({ parsePort($0) }), let high = bounds.last.flatMap({ parsePort($0) }), low <= high else {
                throw RuleError("'\(text)': '\(portText)' is not a port (1-65535) or a port range such as 5000-5099")
            }
            ports = low...high
        }
        return AddressRule(network: address, prefix: length, ports: ports)
    }

    /// A comma-separated list of rules (no spaces needed; spaces around items are ignored).
    package static func parseList(_ text: String, allowPorts: Bool = true) throws(RuleError) -> [AddressRule] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmed() }
        guard !items.contains(where: \.isEmpty) else { throw RuleError("'\(text)' has an empty item: separate addresses by single commas") }
        var rules: [AddressRule] = []
        for item in items { rules.append(try parse(item, allowPorts: allowPorts)) }
        return rules
    }

    private static func parsePort(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = Int(text), (1...65535).contains(value) else { return nil }
        return UInt16(value)
    }
}

package struct RuleError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmed() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
