/// A session id (uid) that passed validation: a UUID in canonical 8-4-4-4-12 hex form, lowercased.
/// It is also the session's shared secret: it is shown whole only to its holder, and everywhere
/// else by its `prefix`. The one type of session id in every module (the wire checks it at the edge,
/// the data plane derives the session's keys from its `bytes` and names its files by its `text`).
public struct SessionID: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase canonical text ("4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3").
    public let text: String
    /// The 16 bytes of the UUID (the key derivation's input).
    public let bytes: [UInt8]

    /// The id of `uid`, or nil unless it is exactly 8-4-4-4-12 hex digits (any version, either case).
    public init?(_ uid: String) {
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

    /// The id of `uid`, or a `ValidationError` that quotes it and says what a uid looks like.
    public init(validating uid: String) throws(ValidationError) {
        guard let id = SessionID(uid) else { throw .invalidSessionID(uid) }
        self = id
    }

    /// The first 8 characters: what logs and messages show (the full uid is the session secret).
    public var prefix: String { String(text.prefix(8)) }

    public var description: String { prefix }

    /// An RFC 4122 version-4 (random) UUID: version nibble 4, variant 10xx.
    public var isRandom: Bool { bytes[6] >> 4 == 4 && bytes[8] >> 6 == 0b10 }

    /// The fixed uid of `s2uc ... --mock True`, the one definition of it.
    public static let mock = SessionID("4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3")!  // safe: a canonical UUID literal

    /// Accepts exactly 8-4-4-4-12 hex digits (any UUID version, either case); returns it lowercased.
    public static func validate(_ text: String) throws(ValidationError) -> String {
        try SessionID(validating: text).text
    }

    /// A new random (version 4) session id, from the kernel's CSPRNG: `random()` as a `SessionID`.
    public static func newRandom() -> SessionID {
        SessionID(random())!  // safe: random() writes canonical 8-4-4-4-12 lowercase hex
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

    /// The first 8 characters, to name a session in logs (`session=4f8583bc`). The uid may not have
    /// been validated yet (it is logged as it came off the wire): anything but hex digits and dashes
    /// comes back quoted and escaped (`session='\u{1B}[2J x='`), so that it can neither break the
    /// line nor pass for another field.
    /// Whether `text` could be the start of a uid as `s2uc list` shows it: 8 to 35 hexadecimal digits
    /// and dashes (an operator names a session that way).
    public static func looksLikePrefix(_ text: String) -> Bool {
        (8..<36).contains(text.utf8.count) && text.utf8.allSatisfy { isHexDigit($0) || $0 == UInt8(ascii: "-") }
    }

    public static func shortPrefix(_ uid: String) -> String {
        let prefix = String(uid.prefix(8))
        let plain = prefix.utf8.allSatisfy { isHexDigit($0) || $0 == UInt8(ascii: "-") }
        return plain ? prefix : quote(prefix)
    }
}

private func isHexDigit(_ byte: UInt8) -> Bool {
    isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
}

/// In a file s2cs writes (a session record), a session id is its text; reading one validates it.
extension SessionID: Codable {
    public init(from decoder: any Decoder) throws {
        self = try SessionID(validating: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
