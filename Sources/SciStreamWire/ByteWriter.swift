/// Appends the fields of a frame body.
///
/// A value the format cannot carry (a string over `WireConstants.maxStringLength` UTF-8 bytes, a list over
/// `WireConstants.maxListCount` items) is cut to fit, so the output always decodes; the first cut is kept
/// in `firstOverflow`, which `Message.checkedEncoded` turns into an error.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []
    private(set) var firstOverflow: WireError?

    mutating func writeU8(_ value: UInt8) {
        bytes.append(value)
    }

    mutating func writeU16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    mutating func writeU32(_ value: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 24))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    mutating func writeU64(_ value: UInt64) {
        writeU32(UInt32(truncatingIfNeeded: value >> 32))
        writeU32(UInt32(truncatingIfNeeded: value))
    }

    /// A u16 byte length, then the UTF-8 bytes; cut at a character boundary if too long.
    mutating func writeString(_ value: String, _ field: String) {
        let utf8 = Array(value.utf8)
        var length = utf8.count
        if length > WireConstants.maxStringLength {
            noteOverflow(.stringTooLong(field, length))
            length = WireConstants.maxStringLength
            // Back up to the start of a UTF-8 sequence (continuation bytes are 0b10xxxxxx).
            while length > 0 && utf8[length] & 0xC0 == 0x80 { length -= 1 }
        }
        writeU16(UInt16(length))  // length <= UInt16.max here
        bytes.append(contentsOf: utf8[0..<length])
    }

    /// A u16 item count, then the items; cut to `WireConstants.maxListCount` items if longer.
    mutating func writeList<Element>(
        _ elements: [Element],
        _ field: String,
        _ writeElement: (inout ByteWriter, Element) -> Void
    ) {
        var count = elements.count
        if count > WireConstants.maxListCount {
            noteOverflow(.tooManyItems(field, count))
            count = WireConstants.maxListCount
        }
        writeU16(UInt16(count))  // count <= maxListCount < UInt16.max here
        for element in elements.prefix(count) {
            writeElement(&self, element)
        }
    }

    mutating func writeStringList(_ elements: [String], _ field: String) {
        writeList(elements, field) { writer, element in writer.writeString(element, field) }
    }

    private mutating func noteOverflow(_ error: WireError) {
        if firstOverflow == nil { firstOverflow = error }
    }
}
