/// One session in a `ListReply`.
public struct SessionInfo: Equatable, Sendable {
    public var uid: String
    public var role: Role
    /// The session's state as the server names it (e.g. `waiting-for-hello`, `running`).
    public var state: String
    public var listeners: [String]
    public var targets: [String]
    /// Free text: the proxy type, an exit status, ...
    public var note: String

    public init(uid: String, role: Role, state: String, listeners: [String], targets: [String], note: String) {
        self.uid = uid
        self.role = role
        self.state = state
        self.listeners = listeners
        self.targets = targets
        self.note = note
    }
}

extension SessionInfo: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        uid = try reader.readString("SessionInfo.uid")
        role = try reader.readRole("SessionInfo.role")
        state = try reader.readString("SessionInfo.state")
        listeners = try reader.readStringList("SessionInfo.listeners")
        targets = try reader.readStringList("SessionInfo.targets")
        note = try reader.readString("SessionInfo.note")
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(uid, "SessionInfo.uid")
        writer.writeRole(role)
        writer.writeString(state, "SessionInfo.state")
        writer.writeStringList(listeners, "SessionInfo.listeners")
        writer.writeStringList(targets, "SessionInfo.targets")
        writer.writeString(note, "SessionInfo.note")
    }
}
