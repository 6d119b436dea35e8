import Foundation
import SciStreamGRPC
import SciStreamSystem
import SciStreamTLS

/// A gRPC client for the tests, written from the original's scistream.proto (field numbers) and
/// the HTTP/2 and HPACK specifications: it sends requests the way gRPC clients do (literal fields
/// with incremental indexing, Huffman-coded, later requests naming earlier fields by their dynamic
/// table index), several calls in flight on one connection, and reads the server's frames.
final class GRPCTestClient {
    struct Answer {
        var status: Int?
        var message: String
        var body: [UInt8]?
        var httpStatus: String?
    }

    private let stream: any ByteStream
    private var decoder = HTTP2FrameDecoder(maxFrameSize: 16384)
    private var hpack = HPACKDecoder()
    /// This client's view of the server's dynamic table for the fields it sent, newest first.
    private var sentTable: [HeaderField] = []
    private var nextStream: UInt32 = 1
    private var answers: [UInt32: Answer] = [:]
    private var finished: Set<UInt32> = []
    let authority: String
    /// Frames the server sent, by kind (for assertions).
    private(set) var goAway: [UInt8]? = nil

    private init(stream: any ByteStream, authority: String) {
        self.stream = stream
        self.authority = authority
    }

    /// Connects to `host:port`: plaintext, or TLS trusting `trustAnchor`, offering ALPN h2 unless told not to.
    static func connect(host: String, port: UInt16, trustAnchor: String?, alpn: Bool = true) async throws -> GRPCTestClient {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: host, port: port), deadline: .now + .seconds(10))
        let stream: any ByteStream
        if let trustAnchor {
            let context = try TLSContext.client(trustAnchorPath: trustAnchor)
            if alpn { context.offerHTTP2() }
            let tls = try await TLSStream.connect(socket: socket, context: context, serverName: host, deadline: .now + .seconds(10))
            if alpn && tls.alpnProtocol != "h2" { throw HarnessError("the server did not agree to ALPN h2 (got \(tls.alpnProtocol ?? "none"))") }
            stream = tls
        } else {
            stream = socket
        }
        let client = GRPCTestClient(stream: stream, authority: "\(host):\(port)")
        try await stream.writeAll(http2Preface + HTTP2Frame.settings([(.enablePush, 0), (.initialWindowSize, 4 << 20)]).encoded, deadline: .now + .seconds(10))
        return client
    }

    func close() { stream.close() }

    /// Sends one unary call; returns its stream id. The answer is read by `wait`.
    @discardableResult
    func send(_ method: String, _ message: [UInt8], token: String? = "INVALID_TOKEN") async throws -> UInt32 {
        let id = nextStream
        nextStream += 2
        var fields = [HeaderField(":method", "POST"), HeaderField(":scheme", "http"), HeaderField(":path", ControlProto.path(method)),
                      HeaderField(":authority", authority), HeaderField("content-type", "application/grpc"),
                      HeaderField("te", "trailers"), HeaderField("user-agent", "scistream-tests")]
        if let token { fields.append(HeaderField("authorization", token)) }
        let block = encode(fields)
        // The block in two frames (HEADERS + CONTINUATION), the message in two DATA frames.
        let cut = block.count / 2
        let framed = GRPCStatus.framed(message)
        var bytes = HTTP2Frame(.headers, streamID: id, payload: Array(block[..<cut])).encoded
        bytes += HTTP2Frame(.continuation, flags: HTTP2Frame.Flag.endHeaders, streamID: id, payload: Array(block[cut...])).encoded
        bytes += HTTP2Frame(.data, streamID: id, payload: Array(framed.prefix(3))).encoded
        bytes += HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream, streamID: id, payload: Array(framed.dropFirst(3))).encoded
        try await stream.writeAll(bytes, deadline: .now + .seconds(10))
        return id
    }

    /// Reads until every stream in `ids` has ended; their answers.
    func wait(_ ids: [UInt32], timeout: Duration = .seconds(60)) async throws -> [Answer] {
        let deadline = ContinuousClock.now + timeout
        while !ids.allSatisfy(finished.contains) {
            let bytes = try await stream.read(max: 65536, deadline: deadline)
            guard !bytes.isEmpty else { throw HarnessError("the server closed the connection (GOAWAY: \(goAway.map { "\($0)" } ?? "none"))") }
            decoder.append(bytes)
            while let frame = try decoder.next() { try await take(frame) }
        }
        return ids.map { answers[$0] ?? Answer(status: nil, message: "", body: nil) }
    }

    /// One call, sent and awaited.
    func call(_ method: String, _ message: [UInt8], token: String? = "INVALID_TOKEN") async throws -> Answer {
        try await wait([send(method, message, token: token)])[0]
    }

    private func take(_ frame: HTTP2Frame) async throws {
        switch frame.kind {
        case .settings where !frame.has(HTTP2Frame.Flag.ack):
            try await stream.writeAll(HTTP2Frame.settingsAck.encoded, deadline: .now + .seconds(10))
        case .ping where !frame.has(HTTP2Frame.Flag.ack):
            try await stream.writeAll(HTTP2Frame(.ping, flags: HTTP2Frame.Flag.ack, streamID: 0, payload: frame.payload).encoded, deadline: .now + .seconds(10))
        case .headers:
            let fields = try hpack.decode(frame.payload)
            var answer = answers[frame.streamID] ?? Answer(status: nil, message: "", body: nil)
            for field in fields {
                switch field.name {
                case ":status": answer.httpStatus = field.value
                case "grpc-status": answer.status = Int(field.value)
                case "grpc-message": answer.message = GRPCStatus.percentDecoded(field.value)
                default: break
                }
            }
            answers[frame.streamID] = answer
            if frame.has(HTTP2Frame.Flag.endStream) { finished.insert(frame.streamID) }
        case .data:
            var answer = answers[frame.streamID] ?? Answer(status: nil, message: "", body: nil)
            answer.body = (answer.body ?? []) + frame.payload
            answers[frame.streamID] = answer
            if frame.has(HTTP2Frame.Flag.endStream) { finished.insert(frame.streamID) }
        case .rstStream:
            finished.insert(frame.streamID)
        case .goAway:
            goAway = frame.payload
        default:
            break
        }
    }

    /// HPACK: a field already in the server's dynamic table by index, any other as a literal with
    /// incremental indexing and Huffman-coded strings.
    private func encode(_ fields: [HeaderField]) -> [UInt8] {
        var block: [UInt8] = []
        for field in fields {
            if let index = sentTable.firstIndex(of: field) {
                block += Self.integer(62 + index, prefixBits: 7, flags: 0x80)
                continue
            }
            block.append(0x40)
            for text in [field.name, field.value] {
                let coded = Huffman.encode(Array(text.utf8))
                block += Self.integer(coded.count, prefixBits: 7, flags: 0x80)
                block += coded
            }
            sentTable.insert(field, at: 0)
        }
        return block
    }

    private static func integer(_ value: Int, prefixBits: Int, flags: UInt8) -> [UInt8] {
        let mask = (1 << prefixBits) - 1
        guard value >= mask else { return [flags | UInt8(value)] }
        var bytes = [flags | UInt8(mask)]
        var rest = value - mask
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        return bytes + [UInt8(rest)]
    }
}
