/// `list` (kind 0x05): the server's sessions.
///
/// `wantsTraffic` adds an optional trailing `u8` of flags, `0x01`: send the traffic section (see
/// `ListReply`). A request without it is the original one, and an s2cs that predates the flags
/// refuses a request with it (trailing bytes), so a client asks again without.
public struct ListSessions: Equatable, Sendable {
    public var token: String
    public var wantsTraffic: Bool

    public init(token: String, wantsTraffic: Bool = false) {
        self.token = token
        self.wantsTraffic = wantsTraffic
    }
}

extension ListSessions: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("ListSessions.token")
        // Refused by an older s2cs (trailing bytes): the client then asks again without.
        wantsTraffic = try reader.readOptionalFlag("ListSessions.flags")
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "ListSessions.token")
        if wantsTraffic { writer.writeU8(0x01) }
    }
}
