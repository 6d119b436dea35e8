/// `update` (kind 0x03): the targets the session's listeners forward to; the server starts the proxy.
/// Listener `i` forwards to target `i % remoteListeners.count`.
public struct Update: Equatable, Sendable {
    public var token: String
    public var uid: SessionID
    public var role: Role
    /// `host:port` of each target.
    public var remoteListeners: [String]

    public init(token: String, uid: SessionID, role: Role, remoteListeners: [String]) {
        self.token = token
        self.uid = uid
        self.role = role
        self.remoteListeners = remoteListeners
    }
}

extension Update: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("Update.token")
        let uidText = try reader.readUID("Update.uid")
        role = try reader.readRole("Update.role")
        remoteListeners = try reader.readStringList("Update.remoteListeners")
        uid = try reader.sessionID(uidText, kind: 0x03)
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "Update.token")
        writer.writeString(uid.text, "Update.uid")
        writer.writeRole(role)
        writer.writeStringList(remoteListeners, "Update.remoteListeners")
    }
}
