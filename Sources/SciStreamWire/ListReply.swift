/// The answer to `list` (kind 0x85). `traffic` is an optional trailing section, sent only to a
/// `list` that asked for it (`ListSessions.wantsTraffic`): one entry per session whose figures
/// the server has, matched to `sessions` by uid.
public struct ListReply: Equatable, Sendable {
    public var status: Status
    public var sessions: [SessionInfo]
    public var traffic: [SessionTraffic]?

    public init(status: Status, sessions: [SessionInfo], traffic: [SessionTraffic]? = nil) {
        self.status = status
        self.sessions = sessions
        self.traffic = traffic
    }
}

extension ListReply: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        status = try Status(from: &reader)
        sessions = try reader.readList("ListReply.sessions") { (reader: inout ByteReader) throws(WireError) in
            try SessionInfo(from: &reader)
        }
        traffic = reader.remaining > 0
            ? try reader.readList("ListReply.traffic") { (reader: inout ByteReader) throws(WireError) in try SessionTraffic(from: &reader) }
            : nil
    }

    func encode(to writer: inout ByteWriter) {
        status.encode(to: &writer)
        writer.writeList(sessions, "ListReply.sessions") { writer, session in session.encode(to: &writer) }
        if let traffic {
            writer.writeList(traffic, "ListReply.traffic") { writer, entry in entry.encode(to: &writer) }
        }
    }
}
