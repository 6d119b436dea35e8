/// The protobuf wire format (proto3), as far as SciStream's messages need it: varints, strings and
/// repeated strings; other fields are skipped, groups refused.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed  // 32- or 64-bit: no SciStream field has one
    }

    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The next field's number and value, or nil at the end of the message.
    mutating func next() throws(GRPCWireError) -> (field: UInt64, value: Value)? {
        guard index < bytes.count else { return nil }
        let key = try varint()
        let field = key >> 3
        guard field > 0 else { throw .message("protobuf field number 0") }
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: try skip(8); return (field, .fixed)
        case 5: try skip(4); return (field, .fixed)
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.count - index) else { throw .message("protobuf field \(field) runs past the message") }
            let start = index
            index += Int(length)
            return (field, .bytes(bytes[start..<index]))
        default:
            throw .message("protobuf wire type \(key & 7) (field \(field)) is not supported")
        }
    }

    private mutating func skip(_ count: Int) throws(GRPCWireError) {
        guard count <= bytes.count - index else { throw .message("protobuf message cut short") }
        index += count
    }

    private mutating func varint() throws(GRPCWireError) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard index < bytes.count else { throw .message("protobuf message cut short inside a varint") }
            let byte = bytes[index]
            index += 1
            guard shift < 63 || byte <= 1 else { throw .message("protobuf varint longer than 64 bits") }
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        throw .message("protobuf varint longer than 10 bytes")
    }

    /// A string field's text: proto3 strings are UTF-8, anything else is refused.
    static func string(_ value: Value, field: String) throws(GRPCWireError) -> String {
        guard case .bytes(let slice) = value else { throw .message("protobuf field \(field) is not a string") }
        guard let text = String(validating: slice, as: UTF8.self) else { throw .message("protobuf field \(field) is not UTF-8") }
        return text
    }

    /// An int32 field: a varint whose low 32 bits are the two's-complement value.
    static func int32(_ value: Value, field: String) throws(GRPCWireError) -> Int32 {
        guard case .varint(let number) = value else { throw .message("protobuf field \(field) is not an integer") }
        return Int32(truncatingIfNeeded: number)
    }
}

/// A message's fields by number, read once (repeated fields in order; for a singular field the last
/// occurrence wins, as protobuf says). Absent fields read as proto3's defaults.
struct ProtobufFields {
    private var values: [UInt64: [ProtobufReader.Value]] = [:]

    init(_ bytes: [UInt8]) throws(GRPCWireError) {
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() { values[field, default: []].append(value) }
    }

    func string(_ field: UInt64, _ name: String) throws(GRPCWireError) -> String {
        guard let value = values[field]?.last else { return "" }
        return try ProtobufReader.string(value, field: name)
    }

    func strings(_ field: UInt64, _ name: String) throws(GRPCWireError) -> [String] {
        var texts: [String] = []
        for value in values[field] ?? [] { texts.append(try ProtobufReader.string(value, field: name)) }
        return texts
    }

    func int32(_ field: UInt64, _ name: String) throws(GRPCWireError) -> Int32 {
        guard let value = values[field]?.last else { return 0 }
        return try ProtobufReader.int32(value, field: name)
    }
}

struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// A string field; proto3 leaves out the default (empty) value of a singular field.
    mutating func string(_ field: UInt64, _ text: String, repeated: Bool = false) {
        guard repeated || !text.isEmpty else { return }
        varint(field << 3 | 2)
        varint(UInt64(text.utf8.count))
        bytes.append(contentsOf: text.utf8)
    }

    mutating func strings(_ field: UInt64, _ texts: [String]) {
        for text in texts { string(field, text, repeated: true) }
    }

    /// An int32 field (negative values take ten bytes, as protobuf sign-extends them).
    mutating func int32(_ field: UInt64, _ value: Int32) {
        guard value != 0 else { return }
        varint(field << 3)
        varint(UInt64(bitPattern: Int64(value)))
    }
}
