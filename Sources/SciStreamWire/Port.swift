/// TCP port numbers as users type them: decimal digits only, 1 to 65535.
public enum Port {
    /// `"5001"` → 5001. Rejects signs, spaces, hex, 0 and values over 65535.
    public static func parse(_ text: String) throws(ValidationError) -> UInt16 {
        guard !text.isEmpty, text.utf8.allSatisfy(isDigit) else { throw .notAPort(text) }
        var value = 0
        for byte in text.utf8 {
            value = min(value * 10 + Int(byte - UInt8(ascii: "0")), 100_000)  // saturate: no overflow
        }
        guard (1...65535).contains(value), let port = UInt16(exactly: value) else {
            throw .portOutOfRange(text)
        }
        return port
    }

    /// `"5001,5002"` → [5001, 5002]. Only digits and single commas; no spaces, no empty entries, no repeats.
    public static func parseList(_ text: String) throws(ValidationError) -> [UInt16] {
        guard !text.isEmpty else { throw .emptyPortList }
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        guard text.utf8.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ",") }),
              entries.allSatisfy({ !$0.isEmpty }) else {
            throw .malformedPortList(text)
        }
        guard entries.count <= WireConstants.maxListCount else { throw .tooManyEntries(entries.count) }
        var ports: [UInt16] = []
        var seen = Set<UInt16>()
        for entry in entries {
            let port = try parse(String(entry))
            guard seen.insert(port).inserted else { throw .duplicatePort(port, text) }
            ports.append(port)
        }
        return ports
    }
}

func isDigit(_ byte: UInt8) -> Bool {
    byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
}
