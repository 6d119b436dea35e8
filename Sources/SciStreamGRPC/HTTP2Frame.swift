/// The client connection preface (RFC 9113, 3.4): `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
public let http2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// One HTTP/2 frame (RFC 9113, 4.1): the 9-byte header's fields and the payload.
public struct HTTP2Frame: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case data = 0x0, headers = 0x1, priority = 0x2, rstStream = 0x3, settings = 0x4
        case pushPromise = 0x5, ping = 0x6, goAway = 0x7, windowUpdate = 0x8, continuation = 0x9
    }

    public enum Flag {
        public static let endStream: UInt8 = 0x1
        public static let ack: UInt8 = 0x1
        public static let endHeaders: UInt8 = 0x4
        public static let padded: UInt8 = 0x8
        public static let priority: UInt8 = 0x20
    }

    /// SETTINGS parameters (RFC 9113, 6.5.2).
    public enum Setting: UInt16, Sendable {
        case headerTableSize = 0x1, enablePush = 0x2, maxConcurrentStreams = 0x3
        case initialWindowSize = 0x4, maxFrameSize = 0x5, maxHeaderListSize = 0x6
    }

    /// The frame type byte; unknown types are kept (and ignored by the connection).
    public var type: UInt8
    public var flags: UInt8
    public var streamID: UInt32
    public var payload: [UInt8]

    public init(type: UInt8, flags: UInt8 = 0, streamID: UInt32, payload: [UInt8] = []) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.payload = payload
    }

    public init(_ kind: Kind, flags: UInt8 = 0, streamID: UInt32, payload: [UInt8] = []) {
        self.init(type: kind.rawValue, flags: flags, streamID: streamID, payload: payload)
    }

    public var kind: Kind? { Kind(rawValue: type) }

    public func has(_ flag: UInt8) -> Bool { flags & flag != 0 }

    /// The frame on the wire. The payload must be under 2^24 bytes (callers split by the peer's
    /// SETTINGS_MAX_FRAME_SIZE, at most 2^24 - 1).
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(9 + payload.count)
        let length = UInt32(payload.count)
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(type)
        bytes.append(flags)
        bytes.append(contentsOf: UInt32BE.bytes(streamID & 0x7FFF_FFFF))
        bytes.append(contentsOf: payload)
        return bytes
    }

    // MARK: - Frames this side sends

    public static func settings(_ values: [(Setting, UInt32)]) -> HTTP2Frame {
        var payload: [UInt8] = []
        for (setting, value) in values {
            payload.append(UInt8(setting.rawValue >> 8))
            payload.append(UInt8(truncatingIfNeeded: setting.rawValue))
            payload.append(contentsOf: UInt32BE.bytes(value))
        }
        return HTTP2Frame(.settings, streamID: 0, payload: payload)
    }

    public static let settingsAck = HTTP2Frame(.settings, flags: Flag.ack, streamID: 0)

    public static func windowUpdate(streamID: UInt32, increment: UInt32) -> HTTP2Frame {
        HTTP2Frame(.windowUpdate, streamID: streamID, payload: UInt32BE.bytes(increment & 0x7FFF_FFFF))
    }

    public static func rstStream(streamID: UInt32, code: HTTP2ErrorCode) -> HTTP2Frame {
        HTTP2Frame(.rstStream, streamID: streamID, payload: UInt32BE.bytes(code.rawValue))
    }

    public static func goAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String = "") -> HTTP2Frame {
        HTTP2Frame(.goAway, streamID: 0,
                   payload: UInt32BE.bytes(lastStreamID & 0x7FFF_FFFF) + UInt32BE.bytes(code.rawValue) + Array(debug.utf8.prefix(256)))
    }
}

/// Big-endian 32-bit integers in frame payloads.
enum UInt32BE {
    static func bytes(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    static func read(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }
}

/// Splits a byte stream into frames: a two-state machine (header, then payload), the length checked
/// against the maximum before anything is allocated for the payload.
public struct HTTP2FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var offset = 0
    /// The largest payload accepted (this side's SETTINGS_MAX_FRAME_SIZE).
    public var maxFrameSize: Int

    public init(maxFrameSize: Int = 16384) {
        self.maxFrameSize = maxFrameSize
    }

    public var bufferedByteCount: Int { buffer.count - offset }

    public mutating func append(_ bytes: [UInt8]) {
        if offset > 0 && offset == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            offset = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The first `count` buffered bytes (at most what is buffered), not consumed.
    public func peek(_ count: Int) -> [UInt8] {
        Array(buffer[offset..<offset + min(count, bufferedByteCount)])
    }

    /// Consumes `count` bytes if they are all buffered (the connection preface).
    public mutating func take(_ count: Int) -> [UInt8]? {
        guard bufferedByteCount >= count else { return nil }
        defer { offset += count }
        return Array(buffer[offset..<offset + count])
    }

    /// The next complete frame, or nil until more bytes arrive.
    public mutating func next() throws(GRPCWireError) -> HTTP2Frame? {
        guard bufferedByteCount >= 9 else { return nil }
        let length = Int(buffer[offset]) << 16 | Int(buffer[offset + 1]) << 8 | Int(buffer[offset + 2])
        guard length <= maxFrameSize else {
            throw .connection(.frameSizeError, "frame of \(length) bytes over SETTINGS_MAX_FRAME_SIZE \(maxFrameSize)")
        }
        guard bufferedByteCount >= 9 + length else { return nil }
        let type = buffer[offset + 3]
        let flags = buffer[offset + 4]
        let streamID = UInt32BE.read(buffer, at: offset + 5) & 0x7FFF_FFFF
        let payload = Array(buffer[offset + 9..<offset + 9 + length])
        offset += 9 + length
        if offset > 65536 && offset * 2 > buffer.count {
            buffer.removeFirst(offset)
            offset = 0
        }
        return HTTP2Frame(type: type, flags: flags, streamID: streamID, payload: payload)
    }
}
