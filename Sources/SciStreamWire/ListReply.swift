/// The answer to `list` (kind 0x85).
public struct ListReply: Equatable, Sendable {
    public var status: Status
    public var sessions: [SessionInfo]

    public init(status: Status, sessions: [SessionInfo]) {
        self.status = status
        self.sessions = sessions
    }
}

extension ListReply: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        status = try Status(from: &reader)
        sessions = try reader.readList("ListReply.sessions") { (reader: inout ByteReader) throws(WireError) in
            try SessionInfo(from: &reader)
        }
    }

    func encode(to writer: inout ByteWriter) {
        status.encode(to: &writer)
        writer.writeList(sessions, "ListReply.sessions") { writer, session in session.encode(to: &writer) }
    }
}
