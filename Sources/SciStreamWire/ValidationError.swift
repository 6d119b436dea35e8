/// Why a value given by a user (a port, an address, a session id) was rejected.
///
/// Every value that reaches a generated proxy config passes a validator first. The description names the
/// value (quoted, control characters escaped, so it stays on one line) and says what to do instead.
public enum ValidationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not decimal digits (the empty string included).
    case notAPort(String)
    /// Digits, but 0 or over 65535.
    case portOutOfRange(String)
    case emptyPortList
    /// Characters other than digits and commas, or an empty entry.
    case malformedPortList(String)
    case duplicatePort(UInt16, String)
    /// A list (of ports or listeners) with more entries than `WireConstants.maxListCount`.
    case tooManyEntries(Int)
    case malformedPortRange(String)
    /// A range whose first port is greater than its last.
    case reversedPortRange(String)
    case emptyAddress
    case missingHost(String)
    case missingPort(String)
    /// An IPv6 address with a port but without brackets, e.g. `::1:5100`.
    case unbracketedIPv6(String)
    case invalidHost(String, HostProblem)
    case invalidSessionID(String)
    case emptyListenerList
    /// A listener list with an empty entry.
    case malformedListenerList(String)
    /// A listener list with quotes, as s2uc prints it (`['192.168.10.11:5100']`).
    case quotedListenerList(String)

    /// What is wrong with a host.
    public enum HostProblem: Equatable, Sendable {
        case empty
        case tooLong(Int)
        case badCharacter(Character)
        /// A DNS label that is empty, over 63 characters, or starts or ends with '-'.
        case badLabel(String)
        case badIPv4
        case badIPv6
        /// A '[' without its ']' (or the reverse).
        case unbalancedBrackets
        /// `unix`: nginx reads `unix:5000` as the local socket file "5000", not as host and port.
        case unixSocketPrefix
    }

    private static let portHint = "use an integer from 1 to 65535"
    private static let addressHint = "use host:port, e.g. 192.0.2.10:5100 or [2001:db8::10]:5100"

    public var description: String {
        switch self {
        case .notAPort(let text):
            if text.isEmpty { return "the port is empty: \(Self.portHint)" }
            return "\(quote(text)) is not a port number: \(Self.portHint)"
        case .portOutOfRange(let text):
            return "port \(quote(text)) is out of range: \(Self.portHint)"
        case .emptyPortList:
            return "the receiver port list is empty: give one or more ports separated by commas, e.g. 5001,5002"
        case .malformedPortList(let text):
            return "\(quote(text)) is not a port list: use ports separated by single commas, without spaces, "
                + "e.g. 5001,5002"
        case .duplicatePort(let port, let text):
            return "port \(port) appears more than once in \(quote(text)): list each port once"
        case .tooManyEntries(let count):
            return "the list has \(count) entries, more than the limit of \(WireConstants.maxListCount)"
        case .malformedPortRange(let text):
            return "\(quote(text)) is not a port range: use two ports joined by '-', e.g. 5100-5200"
        case .reversedPortRange(let text):
            return "port range \(quote(text)) starts after it ends: put the lower port first, e.g. 5100-5200"
        case .emptyAddress:
            return "the address is empty: \(Self.addressHint)"
        case .missingHost(let text):
            return "\(quote(text)) has no host: \(Self.addressHint)"
        case .missingPort(let text):
            return "\(quote(text)) has no port: \(Self.addressHint)"
        case .unbracketedIPv6(let text):
            return "\(quote(text)) is ambiguous: write an IPv6 address in brackets, e.g. [2001:db8::10]:5100"
        case .invalidHost(let host, let problem):
            return "\(quote(host)) is not a valid host: \(problem.explanation)"
        case .invalidSessionID(let text):
            return "\(quote(text)) is not a session id: use the uid the inbound request printed, "
                + "a UUID such as 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"
        case .emptyListenerList:
            return "the listener list is empty: give host:port entries separated by commas, "
                + "e.g. 192.0.2.10:5100,192.0.2.10:5101"
        case .quotedListenerList(let text):
            return "\(quote(text)) has quotes: give the listeners as host:port separated by commas, without "
                + "brackets or quotes, e.g. 192.168.10.11:5100,192.168.10.11:5101"
        case .malformedListenerList(let text):
            return "\(quote(text)) has an empty entry: separate host:port entries with single commas, "
                + "without spaces"
        }
    }
}

extension ValidationError.HostProblem {
    var explanation: String {
        switch self {
        case .empty:
            return "it is empty; use a DNS name or an IP address, e.g. 192.0.2.10"
        case .tooLong(let count):
            return "it is \(count) characters long, more than 253"
        case .badCharacter(let character):
            return "it contains \(quote(String(character))); a host is a DNS name (letters, digits, '-' and '.'), "
                + "an IPv4 address, or an IPv6 address in brackets"
        case .badLabel(let label):
            return "its part \(quote(label)) is not a DNS label: each dot-separated part is 1 to 63 letters, "
                + "digits or '-', and does not start or end with '-'"
        case .badIPv4:
            return "use an IPv4 address as four numbers from 0 to 255 without leading zeros, e.g. 192.0.2.10"
        case .badIPv6:
            return "use an IPv6 address as up to eight groups of 1 to 4 hex digits separated by ':', "
                + "with '::' at most once, e.g. 2001:db8::10"
        case .unbalancedBrackets:
            return "brackets go around a whole IPv6 address, e.g. [2001:db8::10]"
        case .unixSocketPrefix:
            return "a proxy would read 'unix:' as a local socket path, not a host: use the host's IP address or another of its names"
        }
    }
}

/// Text from elsewhere (a server's message, a listener it reports) made safe to print on a terminal:
/// control, format and non-ASCII space characters escaped (`\n`, `\u{1B}`), so that a hostile peer can
/// neither break the line nor send escape sequences; cut after `limit` characters.
public func escapedForTerminal(_ text: String, limit: Int = 4096) -> String {
    escaped(text, limit: limit, quoted: false)
}

/// `'text'` with control, format and non-ASCII space characters escaped (`\n`, `\u{202E}`), cut after 80
/// characters, so that a hostile value cannot break or spoof the line it is reported on.
func quote(_ text: String) -> String {
    "'" + escaped(text, limit: 80, quoted: true) + "'"
}

/// The one escaping of outside text: `quoted` also escapes `\` and `'` (for text inside quotes).
private func escaped(_ text: String, limit: Int, quoted: Bool) -> String {
    var result = ""
    var count = 0
    for scalar in text.unicodeScalars {
        if count == limit {
            result += "…"
            break
        }
        count += 1
        switch scalar {
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case "\\" where quoted: result += "\\\\"
        case "'" where quoted: result += "\\'"
        default:
            if needsEscape(scalar) {
                result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result
}

private func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == " " { return false }
    switch scalar.properties.generalCategory {
    case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator,
         .privateUse, .surrogate, .unassigned:
        return true
    default:
        return false
    }
}
