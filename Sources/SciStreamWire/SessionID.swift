/// Session ids (uids): UUIDs in canonical text form. A uid is also the session's shared secret.
public enum SessionID {
    /// The fixed uid of `s2uc ... --mock True`.
    public static let mock = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"

    /// Accepts exactly 8-4-4-4-12 hex digits (any UUID version, either case); returns it lowercased.
    public static func validate(_ text: String) throws(ValidationError) -> String {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { throw .invalidSessionID(text) }
        for (offset, byte) in bytes.enumerated() {
            let valid = [8, 13, 18, 23].contains(offset) ? byte == UInt8(ascii: "-") : isHexDigit(byte)
            guard valid else { throw .invalidSessionID(text) }
        }
        return text.lowercased()
    }

    /// Whether a valid uid is an RFC 4122 version-4 (random) UUID: version nibble 4, variant 10xx.
    public static func isRandom(_ uid: String) -> Bool {
        let characters = Array(uid.lowercased().utf8)
        guard characters.count == 36 else { return false }
        return characters[14] == UInt8(ascii: "4") && "89ab".utf8.contains(characters[19])
    }

    /// A random (version 4) UUID from `SystemRandomNumberGenerator` (the kernel's CSPRNG on Linux), lowercased.
    public static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A version 4 UUID drawn from `generator`, lowercased. Only a CSPRNG makes a usable session secret.
    public static func random(using generator: inout some RandomNumberGenerator) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for offset in stride(from: 0, to: 16, by: 8) {
            let word = generator.next()
            for shift in 0..<8 {
                bytes[offset + shift] = UInt8(truncatingIfNeeded: word >> (8 * shift))
            }
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        let digits = Array("0123456789abcdef")
        var text = ""
        for (offset, byte) in bytes.enumerated() {
            if [4, 6, 8, 10].contains(offset) { text.append("-") }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return text
    }

    /// The first 8 characters, to name a session in logs (`session=4f8583bc`).
    public static func shortPrefix(_ uid: String) -> String {
        String(uid.prefix(8))
    }
}

private func isHexDigit(_ byte: UInt8) -> Bool {
    isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
}
