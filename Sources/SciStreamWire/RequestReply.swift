/// The answer to `req` (kind 0x81), sent once the session's `Hello` has arrived.
public struct RequestReply: Equatable, Sendable {
    public var status: Status
    /// `host:port` of each listener the server reserved.
    public var listeners: [String]
    /// The `Hello`'s `prodListeners`.
    public var prodListeners: [String]

    public init(status: Status, listeners: [String], prodListeners: [String]) {
        self.status = status
        self.listeners = listeners
        self.prodListeners = prodListeners
    }
}

extension RequestReply: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        status = try Status(from: &reader)
        listeners = try reader.readStringList("RequestReply.listeners")
        prodListeners = try reader.readStringList("RequestReply.prodListeners")
    }

    func encode(to writer: inout ByteWriter) {
        status.encode(to: &writer)
        writer.writeStringList(listeners, "RequestReply.listeners")
        writer.writeStringList(prodListeners, "RequestReply.prodListeners")
    }
}
