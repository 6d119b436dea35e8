/// `req` (kind 0x01): reserve a session's listeners. The reply waits for the session's `Hello`.
public struct Request: Equatable, Sendable {
    /// The bearer token (`INVALID_TOKEN` when the server does not check tokens).
    public var token: String
    /// The session id (a UUID).
    public var uid: SessionID
    public var role: Role
    /// How many listeners to open.
    public var numConn: UInt32
    /// The rate the original protocol carries; informational.
    public var rate: UInt32
    /// Ports to listen on instead of allocating from the server's range (outbound `--receiver_ports`); may be empty.
    public var listenPorts: [UInt16]
    /// Forward UDP datagrams as well as TCP on the listeners (`s2uc --protocol udp`): an optional
    /// trailing byte `0x01`, absent for TCP only, which an older s2cs refuses (trailing bytes).
    public var udp: Bool

    public init(token: String, uid: SessionID, role: Role, numConn: UInt32, rate: UInt32, listenPorts: [UInt16], udp: Bool = false) {
        self.token = token
        self.uid = uid
        self.role = role
        self.numConn = numConn
        self.rate = rate
        self.listenPorts = listenPorts
        self.udp = udp
    }
}

extension Request: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("Request.token")
        let uidText = try reader.readUID("Request.uid")
        role = try reader.readRole("Request.role")
        numConn = try reader.readU32("Request.numConn")
        rate = try reader.readU32("Request.rate")
        listenPorts = try reader.readList("Request.listenPorts") { (reader: inout ByteReader) throws(WireError) in
            try reader.readU16("Request.listenPorts")
        }
        udp = try reader.readOptionalFlag("Request.flags")
        uid = try reader.sessionID(uidText, kind: 0x01)
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "Request.token")
        writer.writeString(uid.text, "Request.uid")
        writer.writeRole(role)
        writer.writeU32(numConn)
        writer.writeU32(rate)
        writer.writeList(listenPorts, "Request.listenPorts") { writer, port in writer.writeU16(port) }
        if udp { writer.writeU8(0x01) }
    }
}
