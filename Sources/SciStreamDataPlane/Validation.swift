#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire

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
