#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire

/// A session id that passed validation: a UUID in canonical 8-4-4-4-12 hex form, lowercased.
/// The only shape of uid that reaches a file name or a config.
struct SessionID: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase canonical text ("4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3").
    let text: String
    /// The 16 bytes of the UUID (the key derivation's input).
    let bytes: [UInt8]

    init?(_ uid: String) {
        let utf8 = Array(uid.utf8)
        guard utf8.count == 36 else { return nil }
        var bytes: [UInt8] = []
        var nibble: UInt8? = nil
        for (index, char) in utf8.enumerated() {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard char == UInt8(ascii: "-") else { return nil }
                continue
            }
            let value: UInt8
            switch char {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = char - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = char - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = char - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let high = nibble {
                bytes.append(high << 4 | value)
                nibble = nil
            } else {
                nibble = value
            }
        }
        self.bytes = bytes
        self.text = uid.lowercased()
    }

    /// The first 8 characters: what logs and messages show (the full uid is the session secret).
    var prefix: String { String(text.prefix(8)) }

    var description: String { prefix }
}

/// A host as it may appear in a proxy config.
enum ConfigHost: Sendable, Hashable {
    case ipv4(String)
    case ipv6(String)  // without brackets, as inet_pton accepts it
    case name(String)  // a DNS name: letters, digits, '-' and '.'

    /// Accepts what the wire's validator accepts (`Endpoint.validateHost`, the one validator of hosts:
    /// a dotted-quad IPv4 address, an IPv6 address, bracketed or not, or a DNS name; never `unix`,
    /// which nginx would read as a socket path), and only [A-Za-z0-9.:-] once the brackets are off.
    /// Anything else (a space, a newline, a quote, a '#', a ';', braces) is rejected before any
    /// config is written.
    init?(_ host: String) {
        guard let bare = try? Endpoint.validateHost(host) else { return nil }
        let allowed = bare.utf8.allSatisfy { char in
            switch char {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
        guard allowed, !bare.isEmpty else { return nil }
        if bare.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, bare, &address) == 1 else { return nil }
            self = .ipv6(bare)
        } else if bare.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            var address = in_addr()
            guard inet_pton(AF_INET, bare, &address) == 1 else { return nil }
            self = .ipv4(bare)
        } else {
            self = .name(bare)
        }
    }

    /// "127.0.0.1", "[::1]", "localhost": the form HAProxy and nginx take before ":port".
    var bracketed: String {
        switch self {
        case .ipv4(let text), .name(let text): text
        case .ipv6(let text): "[\(text)]"
        }
    }

    /// "::1": the form stunnel takes (it splits host and port at the last colon; no brackets).
    var bare: String {
        switch self {
        case .ipv4(let text), .ipv6(let text), .name(let text): text
        }
    }
}

/// An endpoint that passed validation: its host is a `ConfigHost`, its port is 1...65535.
struct ConfigEndpoint: Sendable, Hashable, CustomStringConvertible {
    let host: ConfigHost
    let port: UInt16

    init?(_ endpoint: ProxyEndpoint) {
        guard endpoint.port != 0, let host = ConfigHost(endpoint.host) else { return nil }
        self.host = host
        self.port = endpoint.port
    }

    /// "127.0.0.1:5100", "[::1]:5100" (HAProxy, nginx, and messages).
    var description: String { "\(host.bracketed):\(port)" }

    /// "::1:5100" for stunnel.
    var stunnelForm: String { "\(host.bare):\(port)" }
}

/// A folder path that is safe to put in every proxy's config unquoted: absolute, and only
/// [A-Za-z0-9._/+@%=,-] (no space, quote, '#', ';', newline, '$', braces).
func isConfigSafePath(_ path: String) -> Bool {
    guard path.hasPrefix("/"), path.utf8.count < 3000 else { return false }
    return path.utf8.allSatisfy { char in
        switch char {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "/"),
             UInt8(ascii: "+"), UInt8(ascii: "@"), UInt8(ascii: "%"), UInt8(ascii: "="), UInt8(ascii: ","),
             UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}

/// Makes a piece of outside text printable on one line in a message: control characters escaped,
/// length bounded.
func printable(_ text: String, limit: Int = 80) -> String {
    escapedForTerminal(text, limit: limit)
}
