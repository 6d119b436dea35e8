/// `list` (kind 0x05): the server's sessions.
public struct ListSessions: Equatable, Sendable {
    public var token: String

    public init(token: String) {
        self.token = token
    }
}

extension ListSessions: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("ListSessions.token")
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "ListSessions.token")
    }
}
