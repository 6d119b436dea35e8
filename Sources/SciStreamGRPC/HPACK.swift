/// One header field: a name (lowercase in HTTP/2) and a value, as bytes made text.
public struct HeaderField: Equatable, Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// RFC 7541, 4.1: the size a field takes in a dynamic table.
    var tableSize: Int { name.utf8.count + value.utf8.count + 32 }
}

/// HPACK's static table (RFC 7541, Appendix A), index 1...61.
enum StaticTable {
    static let fields: [HeaderField] = [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
        ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
        ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
        ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
        ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
        ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
        ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
        ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
        ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ].map { HeaderField($0.0, $0.1) }
}

/// HPACK's prefixed integers (RFC 7541, 5.1).
enum HPACKInteger {
    /// The integer whose first byte is `bytes[index]` with an `prefixBits`-bit prefix; advances
    /// `index`. Values beyond 2^28 (and so encodings longer than 5 bytes) are refused.
    static func decode(_ bytes: [UInt8], _ index: inout Int, prefixBits: Int) throws(GRPCWireError) -> Int {
        guard index < bytes.count else { throw .compression("header block ends inside an integer") }
        let mask = (1 << prefixBits) - 1
        var value = Int(bytes[index]) & mask
        index += 1
        guard value == mask else { return value }
        var shift = 0
        while true {
            guard index < bytes.count else { throw .compression("header block ends inside an integer") }
            guard shift <= 21 else { throw .compression("integer too large") }
            let byte = Int(bytes[index])
            index += 1
            value += (byte & 0x7F) << shift
            guard value < 1 << 28 else { throw .compression("integer too large") }
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// Appends `value` with an `prefixBits`-bit prefix; `flags` are the first byte's other bits.
    static func encode(_ value: Int, prefixBits: Int, flags: UInt8, into output: inout [UInt8]) {
        let mask = (1 << prefixBits) - 1
        guard value >= mask else {
            output.append(flags | UInt8(value))
            return
        }
        output.append(flags | UInt8(mask))
        var rest = value - mask
        while rest >= 0x80 {
            output.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        output.append(UInt8(rest))
    }
}

/// Decodes header blocks (RFC 7541), keeping the dynamic table between blocks of one connection.
public struct HPACKDecoder: Sendable {
    /// The dynamic table, newest first.
    private var table: [HeaderField] = []
    private var tableSize = 0
    /// The size the decoder allows (this side's SETTINGS_HEADER_TABLE_SIZE) and the encoder chose.
    private let maxTableSizeAllowed: Int
    private var maxTableSize: Int
    /// The most a decoded header list may total (names + values + 32 per field, as RFC 9113 counts).
    public let maxHeaderListSize: Int

    public init(maxTableSize: Int = 4096, maxHeaderListSize: Int = 16384) {
        self.maxTableSizeAllowed = maxTableSize
        self.maxTableSize = maxTableSize
        self.maxHeaderListSize = maxHeaderListSize
    }

    /// The fields of one complete header block.
    public mutating func decode(_ block: [UInt8]) throws(GRPCWireError) -> [HeaderField] {
        var fields: [HeaderField] = []
        var listSize = 0
        var index = 0
        var fieldSeen = false
        while index < block.count {
            let first = block[index]
            let field: HeaderField
            if first & 0x80 != 0 {  // indexed field
                field = try lookup(try HPACKInteger.decode(block, &index, prefixBits: 7))
            } else if first & 0xC0 == 0x40 {  // literal with incremental indexing
                field = try literal(block, &index, prefixBits: 6)
                insert(field)
            } else if first & 0xE0 == 0x20 {  // dynamic table size update
                guard !fieldSeen else { throw .compression("table size update after a header field") }
                let size = try HPACKInteger.decode(block, &index, prefixBits: 5)
                guard size <= maxTableSizeAllowed else { throw .compression("table size update \(size) over the allowed \(maxTableSizeAllowed)") }
                maxTableSize = size
                evict(toFit: 0)
                continue
            } else {  // literal without indexing (0000) or never indexed (0001)
                field = try literal(block, &index, prefixBits: 4)
            }
            fieldSeen = true
            listSize += field.tableSize
            guard listSize <= maxHeaderListSize else {
                throw .connection(.enhanceYourCalm, "header list larger than \(maxHeaderListSize) bytes")
            }
            fields.append(field)
        }
        return fields
    }

    private func lookup(_ index: Int) throws(GRPCWireError) -> HeaderField {
        if index >= 1 && index <= StaticTable.fields.count { return StaticTable.fields[index - 1] }
        let dynamic = index - StaticTable.fields.count - 1
        guard index > 0, dynamic < table.count else { throw .compression("header index \(index) is not in the table") }
        return table[dynamic]
    }

    private func literal(_ block: [UInt8], _ index: inout Int, prefixBits: Int) throws(GRPCWireError) -> HeaderField {
        let nameIndex = try HPACKInteger.decode(block, &index, prefixBits: prefixBits)
        let name = nameIndex == 0 ? try string(block, &index) : try lookup(nameIndex).name
        return HeaderField(name, try string(block, &index))
    }

    private func string(_ block: [UInt8], _ index: inout Int) throws(GRPCWireError) -> String {
        guard index < block.count else { throw .compression("header block ends before a string") }
        let huffman = block[index] & 0x80 != 0
        let length = try HPACKInteger.decode(block, &index, prefixBits: 7)
        guard length <= block.count - index else { throw .compression("string length \(length) runs past the header block") }
        let raw = block[index..<index + length]
        index += length
        let bytes = huffman ? try Huffman.decode(raw, limit: maxHeaderListSize) : Array(raw)
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func insert(_ field: HeaderField) {
        let size = field.tableSize
        guard size <= maxTableSize else {
            // RFC 7541, 4.4: an entry larger than the table empties it and is not added.
            table.removeAll()
            tableSize = 0
            return
        }
        evict(toFit: size)
        table.insert(field, at: 0)
        tableSize += size
    }

    private mutating func evict(toFit size: Int) {
        while tableSize + size > maxTableSize, let oldest = table.popLast() {
            tableSize -= oldest.tableSize
        }
    }

    /// The dynamic table's entries, newest first (for tests).
    public var dynamicTable: [HeaderField] { table }
}

/// Encodes header blocks as literals without indexing, names by static index where there is one:
/// no state, so nothing to keep in step with the peer's decoder.
public enum HPACKEncoder {
    private static let staticNameIndex: [String: Int] = {
        var index: [String: Int] = [:]
        for (offset, field) in StaticTable.fields.enumerated() where index[field.name] == nil {
            index[field.name] = offset + 1
        }
        return index
    }()

    public static func encode(_ fields: [HeaderField]) -> [UInt8] {
        var output: [UInt8] = []
        for field in fields {
            if let index = staticNameIndex[field.name] {
                HPACKInteger.encode(index, prefixBits: 4, flags: 0x00, into: &output)
            } else {
                output.append(0x00)
                appendString(field.name, into: &output)
            }
            appendString(field.value, into: &output)
        }
        return output
    }

    private static func appendString(_ text: String, into output: inout [UInt8]) {
        let bytes = Array(text.utf8)
        HPACKInteger.encode(bytes.count, prefixBits: 7, flags: 0x00, into: &output)
        output.append(contentsOf: bytes)
    }
}
