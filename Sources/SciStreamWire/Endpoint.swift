/// A `host:port` address as it appears in listener lists and proxy configs; IPv6 hosts are written in
/// brackets (`[::1]:5100`). `host` itself is held without brackets.
public struct Endpoint: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    /// Unchecked: for values trusted code built. Use `parse` or `validateHost` for anything from outside.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// `"192.0.2.10:5100"`, `"gw.example.org:5100"`, `"[2001:db8::10]:5100"`.
    ///
    /// The host must pass `validateHost`; the port is 1-65535 in decimal digits. Anything else (spaces,
    /// newlines, quotes, '#', ';', '{', an empty host, a missing port) is rejected.
    public static func parse(_ text: String) throws(ValidationError) -> Endpoint {
        guard !text.isEmpty else { throw .emptyAddress }
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw .invalidHost(text, .unbalancedBrackets)
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw rest.isEmpty ? .missingPort(text) : .invalidHost(text, .unbalancedBrackets)
            }
            portText = rest.dropFirst()
            guard !host.isEmpty else { throw .missingHost(text) }
            try validateIPv6(host)
        } else {
            guard let lastColon = text.lastIndex(of: ":") else { throw .missingPort(text) }
            guard !text.contains("]") else { throw .invalidHost(text, .unbalancedBrackets) }
            var colon = lastColon
            if text[..<lastColon].contains(":") {
                // Several colons: an IPv6 address without brackets, or junk after the port ("h:5100:1").
                if isIPv6(String(text[..<lastColon])) || isIPv6(text) { throw .unbracketedIPv6(text) }
                colon = text.firstIndex(of: ":") ?? lastColon
            }
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            guard !host.isEmpty else { throw .missingHost(text) }
            _ = try validateHost(host)
        }
        guard !portText.isEmpty else { throw .missingPort(text) }
        return Endpoint(host: host, port: try Port.parse(String(portText)))
    }

    /// Checks a host on its own (`--remote_ip`, `--listener-ip`) and returns it without brackets.
    ///
    /// Accepted: a dotted-quad IPv4 address (each number 0-255, no leading zeros), an IPv6 address (hex
    /// groups, '::' at most once, optionally ending in an IPv4 address; bracketed or not; no zone id), or a
    /// DNS name (dot-separated labels of letters, digits and '-', not starting or ending with '-', at most 253
    /// characters). A name whose last label is all digits must be a valid IPv4 address, so that `1.2.3` or
    /// `010.0.0.1` cannot reach a config that would read them some other way; the name `unix` (any case) is
    /// refused, because nginx reads `unix:5000` as a local socket file.
    public static func validateHost(_ host: String) throws(ValidationError) -> String {
        if host.hasPrefix("[") || host.hasSuffix("]") {
            guard host.hasPrefix("["), host.hasSuffix("]"), host.utf8.count >= 2 else {
                throw .invalidHost(host, .unbalancedBrackets)
            }
            let inner = String(host.dropFirst().dropLast())
            try validateIPv6(inner)
            return inner
        }
        if host.contains(":") {
            try validateIPv6(host)
            return host
        }
        try validateNameOrIPv4(host)
        return host
    }

    private static func validateNameOrIPv4(_ host: String) throws(ValidationError) {
        guard !host.isEmpty else { throw .invalidHost(host, .empty) }
        if let bad = host.first(where: { !isHostNameCharacter($0) }) {
            throw .invalidHost(host, .badCharacter(bad))
        }
        // nginx takes `proxy_pass unix:5000` for a local socket file (its test is case-insensitive).
        guard host.lowercased() != "unix" else { throw .invalidHost(host, .unixSocketPrefix) }
        guard host.utf8.count <= 253 else { throw .invalidHost(host, .tooLong(host.utf8.count)) }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        // A last label of digits means an IPv4 address (no top-level domain is numeric).
        if let last = labels.last, !last.isEmpty, last.utf8.allSatisfy(isDigit) {
            guard isIPv4(host) else { throw .invalidHost(host, .badIPv4) }
            return
        }
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else {
                throw .invalidHost(host, .badLabel(String(label)))
            }
        }
    }

    private static func validateIPv6(_ address: String) throws(ValidationError) {
        if let bad = address.first(where: { !($0.isASCII && ($0.isHexDigit || $0 == ":" || $0 == ".")) }) {
            throw .invalidHost(address, .badCharacter(bad))
        }
        guard isIPv6(address) else { throw .invalidHost(address, .badIPv6) }
    }
}

private func isHostNameCharacter(_ character: Character) -> Bool {
    guard character.isASCII else { return false }
    return character.isLetter || character.isNumber || character == "-" || character == "."
}

/// Four dot-separated decimal numbers 0-255, each "0" or without a leading zero.
func isIPv4(_ text: some StringProtocol) -> Bool {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return false }
    for part in parts {
        let digits = Array(part.utf8)
        guard (1...3).contains(digits.count), digits.allSatisfy(isDigit) else { return false }
        guard digits.count == 1 || digits[0] != UInt8(ascii: "0") else { return false }
        let value = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }  // at most 999
        guard value <= 255 else { return false }
    }
    return true
}

/// RFC 4291 text form: eight groups of 1-4 hex digits, or fewer around one "::"; the last 32 bits may be
/// written as an IPv4 address. No zone id.
func isIPv6(_ text: String) -> Bool {
    guard (2...45).contains(text.utf8.count) else { return false }
    var groupsText = Substring(text)
    var groupsFromIPv4 = 0
    if text.contains(".") {
        guard let colon = text.lastIndex(of: ":"), isIPv4(text[text.index(after: colon)...]) else { return false }
        // Keep the ':' so "::1.2.3.4" leaves "::" and "1::2.3.4.5" leaves "1::".
        groupsText = text[...colon]
        if groupsText.hasSuffix("::") == false { groupsText = groupsText.dropLast() }
        groupsFromIPv4 = 2
    }
    func groups(_ part: Substring) -> Int? {
        if part.isEmpty { return 0 }
        let fields = part.split(separator: ":", omittingEmptySubsequences: false)
        for field in fields {
            guard (1...4).contains(field.utf8.count), field.allSatisfy({ $0.isASCII && $0.isHexDigit }) else {
                return nil
            }
        }
        return fields.count
    }
    let halves = groupsText.split(separator: "::", omittingEmptySubsequences: false)
    switch halves.count {
    case 1:
        guard let count = groups(groupsText) else { return false }
        return count + groupsFromIPv4 == 8
    case 2:
        guard let head = groups(halves[0]), let tail = groups(halves[1]) else { return false }
        return head + tail + groupsFromIPv4 <= 7
    default:
        return false
    }
}
