/// `hello` (kind 0x02): the addresses the session's proxy forwards to; releases the waiting `Request`.
public struct Hello: Equatable, Sendable {
    public var token: String
    public var uid: SessionID
    public var role: Role
    /// `host:port` of each producer application port (inbound: `--remote_ip` with each `--receiver_ports`).
    public var prodListeners: [String]

    public init(token: String, uid: SessionID, role: Role, prodListeners: [String]) {
        self.token = token
        self.uid = uid
        self.role = role
        self.prodListeners = prodListeners
    }
}

extension Hello: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("Hello.token")
        let uidText = try reader.readUID("Hello.uid")
        role = try reader.readRole("Hello.role")
        prodListeners = try reader.readStringList("Hello.prodListeners")
        uid = try reader.sessionID(uidText, kind: 0x02)
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "Hello.token")
        writer.writeString(uid.text, "Hello.uid")
        writer.writeRole(role)
        writer.writeStringList(prodListeners, "Hello.prodListeners")
    }
}
