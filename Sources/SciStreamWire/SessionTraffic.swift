/// The traffic of one session, in the optional traffic section of a `ListReply` (docs/protocol.md):
/// counted by the session's proxy itself.
public struct SessionTraffic: Equatable, Sendable {
    /// How the figures were counted.
    public enum Counting: UInt8, Sendable, CustomStringConvertible {
        /// Not counted (a Mock session, a proxy that is not running, or counting turned off).
        case none = 0
        /// Connections that have closed only (Nginx's access log, Stunnel's log); `openConnections`
        /// still counts the open ones.
        case closedConnections = 1
        /// Every connection, open ones included, as the proxy counts them now (HAProxy's statistics).
        case live = 2

        public var description: String {
            switch self {
            case .none: "none"
            case .closedConnections: "closed-connections"
            case .live: "live"
            }
        }
    }

    /// The session's uid as its `SessionInfo` gives it (a prefix).
    public var uid: String
    /// Seconds since the session was requested.
    public var ageSeconds: UInt32
    public var counting: Counting
    public var openConnections: UInt32
    public var totalConnections: UInt64
    /// Bytes received on the session's listeners and forwarded to its targets.
    public var bytesIn: UInt64
    /// Bytes from the targets, sent back out through the listeners.
    public var bytesOut: UInt64

    public init(uid: String, ageSeconds: UInt32, counting: Counting, openConnections: UInt32 = 0, totalConnections: UInt64 = 0,
                bytesIn: UInt64 = 0, bytesOut: UInt64 = 0) {
        self.uid = uid
        self.ageSeconds = ageSeconds
        self.counting = counting
        self.openConnections = openConnections
        self.totalConnections = totalConnections
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

extension SessionTraffic: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        uid = try reader.readString("SessionTraffic.uid")
        ageSeconds = try reader.readU32("SessionTraffic.age")
        // A counting method this build does not know is reported as not counted.
        counting = Counting(rawValue: try reader.readU8("SessionTraffic.counting")) ?? .none
        openConnections = try reader.readU32("SessionTraffic.openConnections")
        totalConnections = try reader.readU64("SessionTraffic.totalConnections")
        bytesIn = try reader.readU64("SessionTraffic.bytesIn")
        bytesOut = try reader.readU64("SessionTraffic.bytesOut")
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeString(uid, "SessionTraffic.uid")
        writer.writeU32(ageSeconds)
        writer.writeU8(counting.rawValue)
        writer.writeU32(openConnections)
        writer.writeU64(totalConnections)
        writer.writeU64(bytesIn)
        writer.writeU64(bytesOut)
    }
}
