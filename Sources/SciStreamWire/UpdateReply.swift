/// The answer to `update` (kind 0x83), sent once the proxy accepts on every listener.
public struct UpdateReply: Equatable, Sendable {
    public var status: Status
    /// `host:port` of each listener of the running proxy.
    public var listeners: [String]

    public init(status: Status, listeners: [String]) {
        self.status = status
        self.listeners = listeners
    }
}

extension UpdateReply: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        status = try Status(from: &reader)
        listeners = try reader.readStringList("UpdateReply.listeners")
    }

    func encode(to writer: inout ByteWriter) {
        status.encode(to: &writer)
        writer.writeStringList(listeners, "UpdateReply.listeners")
    }
}
