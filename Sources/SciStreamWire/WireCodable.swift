/// A value with a fixed field layout inside a frame body (see `docs/protocol.md`).
protocol WireCodable {
    init(from reader: inout ByteReader) throws(WireError)
    func encode(to writer: inout ByteWriter)
}
