/// The server side of one HTTP/2 connection carrying unary gRPC calls: bytes in, frames out. No I/O
/// and no clock: the caller reads the socket, feeds `receive`, runs the calls it returns, hands
/// each answer to `respond`, and writes what both return, in order.
///
/// Everything the peer controls is bounded: frame size, header block and list size, concurrent
/// streams, message size, and the dynamic table. A connection error is thrown as
/// `GRPCWireError.connection`; the caller then sends `goAway(for:)` and closes.
public struct HTTP2ServerConnection: Sendable {
    public struct Limits: Sendable {
        /// SETTINGS_MAX_CONCURRENT_STREAMS: requests in progress at once (more are refused).
        public var maxConcurrentStreams = 16
        /// A request message's largest size (protobuf bytes); a bigger one fails RESOURCE_EXHAUSTED.
        public var maxMessageSize = 64 * 1024
        /// SETTINGS_MAX_HEADER_LIST_SIZE, and the most a HEADERS + CONTINUATION block may total.
        public var maxHeaderListSize = 16 * 1024
        public init() {}
    }

    private enum StreamState: Equatable {
        case receiving  // headers (and maybe data) in, no END_STREAM yet
        case handling   // the call is with the caller
    }

    private struct Stream {
        var state: StreamState
        var path: String
        var metadata: [HeaderField]
        var body: [UInt8] = []
        var sendWindow: Int
        /// Response bytes waiting for flow-control window: DATA payload, then the trailers' block.
        var pendingData: [UInt8] = []
        var pendingTrailers: [UInt8]? = nil
    }

    private static let defaultWindow = 65535
    private static let maxWindow = Int(Int32.max)

    public let limits: Limits
    private var decoder = HTTP2FrameDecoder()
    private var hpack: HPACKDecoder
    private var prefaceReceived = false
    private var settingsReceived = false
    private var streams: [UInt32: Stream] = [:]
    private var lastStreamID: UInt32 = 0
    /// A header block in progress (HEADERS without END_HEADERS): its stream, bytes, END_STREAM flag.
    private var headerBlock: (streamID: UInt32, bytes: [UInt8], endStream: Bool)? = nil
    private var connectionSendWindow = defaultWindow
    private var peerInitialWindow = defaultWindow
    private var peerMaxFrameSize = 16384
    /// Set once GOAWAY is sent or received: no new streams.
    public private(set) var goingAway = false

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.hpack = HPACKDecoder(maxTableSize: 4096, maxHeaderListSize: limits.maxHeaderListSize)
    }

    /// This side's SETTINGS, sent first on the connection.
    public func start() -> [UInt8] {
        HTTP2Frame.settings([
            (.maxConcurrentStreams, UInt32(limits.maxConcurrentStreams)),
            (.maxHeaderListSize, UInt32(limits.maxHeaderListSize)),
            (.enablePush, 0),
        ]).encoded
    }

    /// Streams whose request is not complete yet (the caller bounds how long they may take).
    public var receivingStreamCount: Int { streams.values.filter { $0.state == .receiving }.count }
    /// Calls handed out and not yet answered, or answered and waiting for window.
    public var activeStreamCount: Int { streams.count }
    /// Bytes of an incomplete frame or preface.
    public var bufferedByteCount: Int { decoder.bufferedByteCount + (headerBlock?.bytes.count ?? 0) }

    // MARK: - Receiving

    /// Takes bytes from the peer: returns the frames to send and the calls now complete.
    public mutating func receive(_ bytes: [UInt8]) throws(GRPCWireError) -> (output: [UInt8], calls: [GRPCCall]) {
        decoder.append(bytes)
        var output: [UInt8] = []
        var calls: [GRPCCall] = []
        if !prefaceReceived {
            let seen = decoder.peek(min(decoder.bufferedByteCount, http2Preface.count))
            guard seen == Array(http2Preface.prefix(seen.count)) else {
                throw .protocolError("the connection does not start with the HTTP/2 client preface")
            }
            guard seen.count == http2Preface.count else { return ([], []) }
            _ = decoder.take(http2Preface.count)
            prefaceReceived = true
        }
        while let frame = try decoder.next() {
            try handle(frame, output: &output, calls: &calls)
        }
        return (output, calls)
    }

    private mutating func handle(_ frame: HTTP2Frame, output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        if let block = headerBlock {
            guard frame.kind == .continuation, frame.streamID == block.streamID else {
                throw .protocolError("a header block was interrupted by another frame")
            }
        }
        guard settingsReceived || (frame.kind == .settings && !frame.has(HTTP2Frame.Flag.ack)) else {
            throw .protocolError("the first frame must be SETTINGS")
        }
        switch frame.kind {
        case .settings: try settings(frame, output: &output)
        case .ping:
            guard frame.streamID == 0 else { throw .protocolError("PING on a stream") }
            guard frame.payload.count == 8 else { throw .connection(.frameSizeError, "PING of \(frame.payload.count) bytes") }
            if !frame.has(HTTP2Frame.Flag.ack) {
                output += HTTP2Frame(.ping, flags: HTTP2Frame.Flag.ack, streamID: 0, payload: frame.payload).encoded
            }
        case .windowUpdate: try windowUpdate(frame, output: &output)
        case .headers: try headers(frame, output: &output, calls: &calls)
        case .continuation: try continuation(frame, output: &output, calls: &calls)
        case .data: try data(frame, output: &output, calls: &calls)
        case .rstStream:
            guard frame.streamID != 0 else { throw .protocolError("RST_STREAM on stream 0") }
            guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "RST_STREAM of \(frame.payload.count) bytes") }
            guard frame.streamID <= lastStreamID else { throw .protocolError("RST_STREAM on idle stream \(frame.streamID)") }
            // The caller's answer, if it comes, is dropped (respond ignores unknown streams).
            streams[frame.streamID] = nil
        case .priority:
            guard frame.streamID != 0 else { throw .protocolError("PRIORITY on stream 0") }
            guard frame.payload.count == 5 else { throw .connection(.frameSizeError, "PRIORITY of \(frame.payload.count) bytes") }
        case .goAway:
            guard frame.streamID == 0 else { throw .protocolError("GOAWAY on a stream") }
            goingAway = true
        case .pushPromise:
            throw .protocolError("a client sent PUSH_PROMISE")
        case nil:
            break  // unknown frame types are ignored (RFC 9113, 4.1)
        }
    }

    private mutating func settings(_ frame: HTTP2Frame, output: inout [UInt8]) throws(GRPCWireError) {
        guard frame.streamID == 0 else { throw .protocolError("SETTINGS on a stream") }
        if frame.has(HTTP2Frame.Flag.ack) {
            guard frame.payload.isEmpty else { throw .connection(.frameSizeError, "SETTINGS ACK with a payload") }
            return
        }
        guard frame.payload.count % 6 == 0 else { throw .connection(.frameSizeError, "SETTINGS of \(frame.payload.count) bytes") }
        settingsReceived = true
        for offset in stride(from: 0, to: frame.payload.count, by: 6) {
            let identifier = UInt16(frame.payload[offset]) << 8 | UInt16(frame.payload[offset + 1])
            let value = Int(UInt32BE.read(frame.payload, at: offset + 2))
            switch HTTP2Frame.Setting(rawValue: identifier) {
            case .initialWindowSize:
                guard value <= Self.maxWindow else { throw .connection(.flowControlError, "SETTINGS_INITIAL_WINDOW_SIZE \(value)") }
                let delta = value - peerInitialWindow
                peerInitialWindow = value
                for id in streams.keys {
                    streams[id]?.sendWindow += delta
                    guard streams[id].map({ $0.sendWindow <= Self.maxWindow }) ?? true else {
                        throw .connection(.flowControlError, "stream window over 2^31-1")
                    }
                }
            case .maxFrameSize:
                guard value >= 16384 && value <= (1 << 24) - 1 else { throw .protocolError("SETTINGS_MAX_FRAME_SIZE \(value)") }
                peerMaxFrameSize = value
            case .enablePush:
                guard value <= 1 else { throw .protocolError("SETTINGS_ENABLE_PUSH \(value)") }
            default:
                break  // table size (this side never indexes), concurrency, list size, unknown: nothing to do
            }
        }
        output += HTTP2Frame.settingsAck.encoded
        output += flush()
    }

    private mutating func windowUpdate(_ frame: HTTP2Frame, output: inout [UInt8]) throws(GRPCWireError) {
        guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "WINDOW_UPDATE of \(frame.payload.count) bytes") }
        let increment = Int(UInt32BE.read(frame.payload, at: 0) & 0x7FFF_FFFF)
        if frame.streamID == 0 {
            guard increment > 0 else { throw .protocolError("WINDOW_UPDATE of 0 on the connection") }
            connectionSendWindow += increment
            guard connectionSendWindow <= Self.maxWindow else { throw .connection(.flowControlError, "connection window over 2^31-1") }
        } else if streams[frame.streamID] != nil {
            guard increment > 0 else {
                streams[frame.streamID] = nil
                output += HTTP2Frame.rstStream(streamID: frame.streamID, code: .protocolError).encoded
                return
            }
            streams[frame.streamID]?.sendWindow += increment
            if let window = streams[frame.streamID]?.sendWindow, window > Self.maxWindow {
                streams[frame.streamID] = nil
                output += HTTP2Frame.rstStream(streamID: frame.streamID, code: .flowControlError).encoded
                return
            }
        }
        output += flush()
    }

    /// The payload of a HEADERS or DATA frame without its padding (and HEADERS' priority fields).
    private static func content(of frame: HTTP2Frame, priorityFields: Bool) throws(GRPCWireError) -> ArraySlice<UInt8> {
        var start = 0
        var end = frame.payload.count
        if frame.has(HTTP2Frame.Flag.padded) {
            guard end >= 1 else { throw .protocolError("padded frame without a pad length") }
            let padding = Int(frame.payload[0])
            start = 1
            guard padding <= end - start else { throw .protocolError("padding longer than the frame") }
            end -= padding
        }
        if priorityFields && frame.has(HTTP2Frame.Flag.priority) {
            guard end - start >= 5 else { throw .connection(.frameSizeError, "HEADERS too short for its priority fields") }
            start += 5
        }
        return frame.payload[start..<end]
    }

    private mutating func headers(_ frame: HTTP2Frame, output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        let id = frame.streamID
        guard id != 0 else { throw .protocolError("HEADERS on stream 0") }
        let fragment = try Self.content(of: frame, priorityFields: true)
        guard fragment.count <= limits.maxHeaderListSize else {
            throw .connection(.enhanceYourCalm, "header block over \(limits.maxHeaderListSize) bytes")
        }
        headerBlock = (id, Array(fragment), frame.has(HTTP2Frame.Flag.endStream))
        if frame.has(HTTP2Frame.Flag.endHeaders) { try headerBlockComplete(output: &output, calls: &calls) }
    }

    private mutating func continuation(_ frame: HTTP2Frame, output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        guard var block = headerBlock else { throw .protocolError("CONTINUATION without HEADERS") }
        guard block.bytes.count + frame.payload.count <= limits.maxHeaderListSize else {
            throw .connection(.enhanceYourCalm, "header block over \(limits.maxHeaderListSize) bytes")
        }
        block.bytes += frame.payload
        headerBlock = block
        if frame.has(HTTP2Frame.Flag.endHeaders) { try headerBlockComplete(output: &output, calls: &calls) }
    }

    private mutating func headerBlockComplete(output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        guard let block = headerBlock else { return }
        headerBlock = nil
        // Decoded even when the stream is refused: the dynamic table must stay in step.
        let fields = try hpack.decode(block.bytes)
        let id = block.streamID
        if let stream = streams[id] {
            // Trailers: must end the stream; their content means nothing to a unary server.
            guard stream.state == .receiving, block.endStream else {
                throw .protocolError("HEADERS on stream \(id) in the middle of its request")
            }
            try complete(id, output: &output, calls: &calls)
            return
        }
        guard id % 2 == 1 else { throw .protocolError("client stream \(id) is even") }
        guard id > lastStreamID else { throw .connection(.streamClosed, "HEADERS on closed stream \(id)") }
        lastStreamID = id
        guard !goingAway, streams.count < limits.maxConcurrentStreams else {
            output += HTTP2Frame.rstStream(streamID: id, code: .refusedStream).encoded
            return
        }
        var pseudo: [String: String] = [:]
        var metadata: [HeaderField] = []
        for field in fields {
            if field.name.hasPrefix(":") {
                guard metadata.isEmpty, pseudo[field.name] == nil else {
                    throw .protocolError("malformed request headers on stream \(id)")
                }
                pseudo[field.name] = field.value
            } else {
                metadata.append(field)
            }
        }
        // (A stream whose request is complete is past .receiving: a failure then needs no reset.)
        streams[id] = Stream(state: block.endStream ? .handling : .receiving, path: pseudo[":path"] ?? "", metadata: metadata, sendWindow: peerInitialWindow)
        let contentType = metadata.first { $0.name == "content-type" }?.value ?? ""
        if pseudo[":method"] != "POST" || !contentType.hasPrefix("application/grpc") {
            output += fail(id, code: GRPCStatus.unimplemented, "this port serves gRPC (POST, content-type application/grpc) and SciStream's own protocol only")
            return
        }
        if block.endStream { try complete(id, output: &output, calls: &calls) }
    }

    private mutating func data(_ frame: HTTP2Frame, output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        let id = frame.streamID
        guard id != 0 else { throw .protocolError("DATA on stream 0") }
        guard id <= lastStreamID else { throw .protocolError("DATA on idle stream \(id)") }
        let content = try Self.content(of: frame, priorityFields: false)
        // Flow control counts the whole payload; it is given back at once (requests are bounded
        // by maxMessageSize, not by the window).
        if !frame.payload.isEmpty {
            output += HTTP2Frame.windowUpdate(streamID: 0, increment: UInt32(frame.payload.count)).encoded
        }
        guard var stream = streams[id], stream.state == .receiving else {
            // A stream this side already answered or refused: its late data is dropped.
            return
        }
        guard stream.body.count + content.count <= limits.maxMessageSize + 5 else {
            output += fail(id, code: GRPCStatus.resourceExhausted, "request message larger than \(limits.maxMessageSize) bytes")
            return
        }
        stream.body += content
        streams[id] = stream
        if frame.has(HTTP2Frame.Flag.endStream) {
            try complete(id, output: &output, calls: &calls)
        } else if !frame.payload.isEmpty {
            output += HTTP2Frame.windowUpdate(streamID: id, increment: UInt32(frame.payload.count)).encoded
        }
    }

    /// The request on stream `id` is complete: hand out its call, or answer the framing error.
    private mutating func complete(_ id: UInt32, output: inout [UInt8], calls: inout [GRPCCall]) throws(GRPCWireError) {
        guard var stream = streams[id] else { return }
        stream.state = .handling
        streams[id] = stream
        let body = stream.body
        guard body.count >= 5 else {
            output += fail(id, code: GRPCStatus.invalidArgument, body.isEmpty ? "no request message" : "request message prefix cut short")
            return
        }
        let length = Int(UInt32BE.read(body, at: 1))
        guard body[0] == 0 else {
            output += fail(id, code: GRPCStatus.unimplemented, "compressed request messages are not supported: send them uncompressed")
            return
        }
        guard length == body.count - 5 else {
            output += fail(id, code: GRPCStatus.invalidArgument, "a unary request carries exactly one message (\(length) bytes announced, \(body.count - 5) sent)")
            return
        }
        stream.body = []
        streams[id] = stream
        calls.append(GRPCCall(streamID: id, path: stream.path, metadata: stream.metadata, message: Array(body[5...])))
    }

    // MARK: - Sending

    /// The answer to stream `id`'s call: headers, message and trailers, as far as flow control
    /// lets them go now (the rest follows a WINDOW_UPDATE). Unknown (reset) streams answer nothing.
    public mutating func respond(_ id: UInt32, _ response: GRPCResponse) -> [UInt8] {
        guard var stream = streams[id], stream.state == .handling else { return [] }
        switch response {
        case .failure(let code, let message):
            return fail(id, code: code, message)
        case .message(let message):
            stream.pendingData = GRPCStatus.framed(message)
            stream.pendingTrailers = HPACKEncoder.encode([HeaderField("grpc-status", "0")])
            streams[id] = stream
            let headers = HPACKEncoder.encode([HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")])
            return HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders, streamID: id, payload: headers).encoded + flush()
        }
    }

    /// A trailers-only answer with a failure status; the stream is closed, and reset if the
    /// client is still sending.
    private mutating func fail(_ id: UInt32, code: Int, _ message: String) -> [UInt8] {
        guard let stream = streams[id] else { return [] }
        streams[id] = nil
        let block = HPACKEncoder.encode([
            HeaderField(":status", "200"), HeaderField("content-type", "application/grpc"),
            HeaderField("grpc-status", "\(code)"),
            HeaderField("grpc-message", GRPCStatus.percentEncoded(String(message.prefix(1024)))),
        ])
        var output = HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders | HTTP2Frame.Flag.endStream, streamID: id, payload: block).encoded
        if stream.state == .receiving {
            output += HTTP2Frame.rstStream(streamID: id, code: .noError).encoded
        }
        return output
    }

    /// Sends whatever pending response data the windows allow, then the trailers of each stream
    /// whose data is all out.
    private mutating func flush() -> [UInt8] {
        var output: [UInt8] = []
        for id in streams.keys.sorted() {
            guard var stream = streams[id], let trailers = stream.pendingTrailers else { continue }
            while !stream.pendingData.isEmpty {
                let size = min(stream.pendingData.count, stream.sendWindow, connectionSendWindow, peerMaxFrameSize)
                guard size > 0 else { break }
                output += HTTP2Frame(.data, streamID: id, payload: Array(stream.pendingData.prefix(size))).encoded
                stream.pendingData.removeFirst(size)
                stream.sendWindow -= size
                connectionSendWindow -= size
            }
            if stream.pendingData.isEmpty {
                output += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders | HTTP2Frame.Flag.endStream, streamID: id, payload: trailers).encoded
                streams[id] = nil
            } else {
                streams[id] = stream
            }
        }
        return output
    }

    /// GOAWAY for `error` (NO_ERROR for an orderly close): no new streams after it.
    public mutating func goAway(_ code: HTTP2ErrorCode, debug: String = "") -> [UInt8] {
        goingAway = true
        return HTTP2Frame.goAway(lastStreamID: lastStreamID, code: code, debug: debug).encoded
    }
}
