/// `release` (kind 0x04): stop a session's proxy and free its ports and key material.
public struct Release: Equatable, Sendable {
    public var token: String
    /// The session, by its uid or (for the server's operators) by a uid prefix as `list` shows it.
    public var session: SessionName

    public init(token: String, uid: SessionID) {
        self.init(token: token, session: .uid(uid))
    }

    public init(token: String, session: SessionName) {
        self.token = token
        self.session = session
    }
}

/// How a release names its session: by its uid, or by other text, which the server takes only from
/// its operators, as the start of a uid as `s2uc list` shows it (and refuses from anyone else).
public enum SessionName: Equatable, Hashable, Sendable {
    case uid(SessionID)
    /// Text that is not a uid, as sent (not validated: the server words the refusal).
    case other(String)

    /// `.uid` if `text` is a session id, `.other` if not.
    public init(_ text: String) {
        if let id = SessionID(text) { self = .uid(id) } else { self = .other(text) }
    }

    /// The text on the wire.
    public var text: String {
        switch self {
        case .uid(let id): id.text
        case .other(let text): text
        }
    }
}

extension Release: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("Release.token")
        session = SessionName(try reader.readUID("Release.uid"))
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "Release.token")
        writer.writeString(session.text, "Release.uid")
    }
}
