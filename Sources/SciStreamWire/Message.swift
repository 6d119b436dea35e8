/// Every message of the control protocol. One request frame, one reply frame per exchange.
public enum Message: Equatable, Sendable {
    case request(Request)            // 0x01
    case hello(Hello)                // 0x02
    case update(Update)              // 0x03
    case release(Release)            // 0x04
    case list(ListSessions)          // 0x05
    case requestReply(RequestReply)  // 0x81
    case helloReply(Status)          // 0x82
    case updateReply(UpdateReply)    // 0x83
    case releaseReply(Status)        // 0x84
    case listReply(ListReply)        // 0x85
    /// The server's answer to a frame it could not decode (0xFF); it closes the connection afterwards.
    case error(Status)

    /// The kind byte that follows the version byte in the frame.
    public var kind: UInt8 {
        switch self {
        case .request: return 0x01
        case .hello: return 0x02
        case .update: return 0x03
        case .release: return 0x04
        case .list: return 0x05
        case .requestReply: return 0x81
        case .helloReply: return 0x82
        case .updateReply: return 0x83
        case .releaseReply: return 0x84
        case .listReply: return 0x85
        case .error: return 0xFF
        }
    }

    /// A short name for logs, e.g. `hello` or `hello-reply`; never any field (a token must not reach a log).
    public var name: String {
        switch self {
        case .request: return "request"
        case .hello: return "hello"
        case .update: return "update"
        case .release: return "release"
        case .list: return "list"
        case .requestReply: return "request-reply"
        case .helloReply: return "hello-reply"
        case .updateReply: return "update-reply"
        case .releaseReply: return "release-reply"
        case .listReply: return "list-reply"
        case .error: return "error"
        }
    }

    /// True for the kinds a server sends (0x80 and above).
    public var isReply: Bool { kind >= 0x80 }

    /// The whole frame, length prefix included.
    ///
    /// A string over `WireConstants.maxStringLength` UTF-8 bytes is cut at a character boundary and a list
    /// over `WireConstants.maxListCount` items is cut to that many, so the frame always decodes; use
    /// `checkedEncoded` to get an error instead.
    public func encoded() -> [UInt8] {
        Self.frame(kind: kind, body: body().bytes)
    }

    /// The whole frame, or an error if a field does not fit the format or the frame is over `maxFrameLength`.
    public func checkedEncoded(maxFrameLength: Int = WireConstants.maxFrameLength) throws(WireError) -> [UInt8] {
        let writer = body()
        if let overflow = writer.firstOverflow { throw overflow }
        let length = 2 + writer.bytes.count
        guard length <= maxFrameLength else { throw .frameTooLarge(length) }
        return Self.frame(kind: kind, body: writer.bytes)
    }

    /// Decodes exactly one whole frame, length prefix included.
    ///
    /// Throws `.incompleteFrame` if the bytes end before the frame does and `.trailingBytes` if bytes follow it.
    public init(decoding frame: some Collection<UInt8>,
                maxFrameLength: Int = WireConstants.maxFrameLength) throws(WireError) {
        var decoder = FrameDecoder(maxFrameLength: maxFrameLength)
        decoder.append(frame)
        guard let message = try decoder.nextMessage() else {
            throw .incompleteFrame(frame.count)
        }
        guard decoder.bufferedByteCount == 0 else { throw .trailingBytes(decoder.bufferedByteCount) }
        self = message
    }

    /// Decodes what follows a frame's length prefix: version, kind, body.
    static func decode(payload: ArraySlice<UInt8>) throws(WireError) -> Message {
        var reader = ByteReader(payload)
        let version = try reader.readU8("version")
        guard version == WireConstants.version else { throw .unsupportedVersion(version) }
        let kind = try reader.readU8("kind")
        let message: Message
        switch kind {
        case 0x01: message = .request(try Request(from: &reader))
        case 0x02: message = .hello(try Hello(from: &reader))
        case 0x03: message = .update(try Update(from: &reader))
        case 0x04: message = .release(try Release(from: &reader))
        case 0x05: message = .list(try ListSessions(from: &reader))
        case 0x81: message = .requestReply(try RequestReply(from: &reader))
        case 0x82: message = .helloReply(try Status(from: &reader))
        case 0x83: message = .updateReply(try UpdateReply(from: &reader))
        case 0x84: message = .releaseReply(try Status(from: &reader))
        case 0x85: message = .listReply(try ListReply(from: &reader))
        case 0xFF: message = .error(try Status(from: &reader))
        default: throw .unknownKind(kind)
        }
        try reader.expectEnd()
        return message
    }

    private func body() -> ByteWriter {
        var writer = ByteWriter()
        switch self {
        case .request(let value): value.encode(to: &writer)
        case .hello(let value): value.encode(to: &writer)
        case .update(let value): value.encode(to: &writer)
        case .release(let value): value.encode(to: &writer)
        case .list(let value): value.encode(to: &writer)
        case .requestReply(let value): value.encode(to: &writer)
        case .helloReply(let value): value.encode(to: &writer)
        case .updateReply(let value): value.encode(to: &writer)
        case .releaseReply(let value): value.encode(to: &writer)
        case .listReply(let value): value.encode(to: &writer)
        case .error(let value): value.encode(to: &writer)
        }
        return writer
    }

    private static func frame(kind: UInt8, body: [UInt8]) -> [UInt8] {
        var header = ByteWriter()
        // Bodies are bounded by the string and list caps; clamping only matters for a frame of terabytes,
        // which no decoder accepts anyway.
        header.writeU32(UInt32(clamping: 2 + body.count))
        header.writeU8(WireConstants.version)
        header.writeU8(kind)
        return header.bytes + body
    }
}
