/// `release` (kind 0x04): stop a session's proxy and free its ports and key material.
public struct Release: Equatable, Sendable {
    public var token: String
    public var uid: String

    public init(token: String, uid: String) {
        self.token = token
        self.uid = uid
    }
}

extension Release: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        token = try reader.readString("Release.token")
        uid = try reader.readString("Release.uid")
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(token, "Release.token")
        writer.writeString(uid, "Release.uid")
    }
}
