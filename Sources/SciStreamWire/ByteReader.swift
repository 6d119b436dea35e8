/// Reads the fields of one frame body, front to back. Every read checks the bytes that remain first,
/// so no input can make it read out of bounds, overflow or trap; a short body throws `.truncated(field)`.
struct ByteReader {
    private let bytes: ArraySlice<UInt8>
    private var index: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.index = bytes.startIndex
    }

    /// Bytes not read yet.
    var remaining: Int { bytes.endIndex - index }

    mutating func readU8(_ field: String) throws(WireError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(field) }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func readU16(_ field: String) throws(WireError) -> UInt16 {
        guard remaining >= 2 else { throw .truncated(field) }
        defer { index += 2 }
        return UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
    }

    mutating func readU32(_ field: String) throws(WireError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated(field) }
        defer { index += 4 }
        return UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16
            | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
    }

    mutating func readU64(_ field: String) throws(WireError) -> UInt64 {
        let high = UInt64(try readU32(field))
        return high << 32 | UInt64(try readU32(field))
    }

    /// A u16 byte length, then that many bytes of UTF-8.
    mutating func readString(_ field: String) throws(WireError) -> String {
        let length = Int(try readU16(field))
        guard remaining >= length else { throw .truncated(field) }
        let utf8 = bytes[index..<(index + length)]
        // Decoded with invalid bytes replaced, then compared: equal only if they were valid UTF-8.
        // (`String(validating:as:)` is generic and unspecialized: a list of 1,000 sessions paid for
        // a runtime metadata lookup per string.)
        let string = String(decoding: utf8, as: UTF8.self)
        guard string.utf8.elementsEqual(utf8) else { throw .invalidUTF8(field) }
        index += length
        return string
    }

    /// A u16 item count (at most `WireConstants.maxListCount`), then the items.
    mutating func readList<Element>(
        _ field: String,
        _ readElement: (inout ByteReader) throws(WireError) -> Element
    ) throws(WireError) -> [Element] {
        let count = Int(try readU16(field))
        guard count <= WireConstants.maxListCount else { throw .tooManyItems(field, count) }
        var elements: [Element] = []
        elements.reserveCapacity(min(count, remaining))  // every item takes at least a byte
        for _ in 0..<count {
            elements.append(try readElement(&self))
        }
        return elements
    }

    mutating func readStringList(_ field: String) throws(WireError) -> [String] {
        try readList(field) { (reader: inout ByteReader) throws(WireError) in try reader.readString(field) }
    }

    /// An optional trailing flag byte, added to a message after the first release: absent (false), or
    /// exactly `0x01` (true). Anything else, or more bytes, is `.trailingBytes`: one encoding per
    /// message, and a flag this build does not know is refused (as an older build refuses any).
    mutating func readOptionalFlag(_ field: String) throws(WireError) -> Bool {
        let extra = remaining
        guard extra > 0 else { return false }
        guard extra == 1, try readU8(field) == 0x01 else { throw .trailingBytes(extra) }
        return true
    }

    /// A uid field: a string that must be a session id. The caller checks it (`sessionID(_:kind:)`)
    /// once the rest of the message has been read, so that a malformed frame is refused as such first.
    mutating func readUID(_ field: String) throws(WireError) -> String {
        try readString(field)
    }

    /// The session id of `text`, read from a message of kind `kind`, or `.invalidSessionID`.
    func sessionID(_ text: String, kind: UInt8) throws(WireError) -> SessionID {
        guard let id = SessionID(text) else { throw .invalidSessionID(kind: kind, text: text) }
        return id
    }

    /// Throws `.trailingBytes` unless every byte has been read.
    func expectEnd() throws(WireError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }
}
