import SciStreamGRPC
import Testing

/// A client's side of the exchange, written out frame by frame.
struct ClientFrames {
    static let settings = HTTP2Frame.settings([(.initialWindowSize, 1 << 20), (.enablePush, 0)])

    /// A request header block: literals with incremental indexing, Huffman-coded, as gRPC clients send.
    static func requestHeaders(path: String, token: String? = "INVALID_TOKEN", method: String = "POST") -> [UInt8] {
        var block: [UInt8] = []
        func literal(_ name: String, _ value: String) {
            block.append(0x40)
            for text in [name, value] {
                let coded = Huffman.encode(Array(text.utf8))
                precondition(coded.count < 127)
                block.append(0x80 | UInt8(coded.count))
                block += coded
            }
        }
        literal(":method", method)
        literal(":scheme", "http")
        literal(":path", path)
        literal(":authority", "localhost")
        literal("content-type", "application/grpc")
        literal("te", "trailers")
        if let token { literal("authorization", token) }
        return block
    }

    static func call(stream: UInt32, path: String, message: [UInt8], token: String? = "INVALID_TOKEN") -> [UInt8] {
        HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders, streamID: stream, payload: requestHeaders(path: path, token: token)).encoded
            + HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream, streamID: stream, payload: GRPCStatus.framed(message)).encoded
    }

    static var opening: [UInt8] { http2Preface + settings.encoded }
}

/// What the server sent, frame by frame, with header blocks decoded.
struct ServerOutput {
    var frames: [HTTP2Frame] = []
    var headers: [UInt32: [[HeaderField]]] = [:]
    var data: [UInt32: [UInt8]] = [:]
    var decoder = HTTP2FrameDecoder(maxFrameSize: 1 << 24 - 1)
    var hpack = HPACKDecoder()

    mutating func take(_ bytes: [UInt8]) throws {
        decoder.append(bytes)
        while let frame = try decoder.next() {
            frames.append(frame)
            if frame.kind == .headers { headers[frame.streamID, default: []].append(try hpack.decode(frame.payload)) }
            if frame.kind == .data { data[frame.streamID, default: []] += frame.payload }
        }
    }

    func status(_ stream: UInt32) -> String? { headers[stream]?.last?.first { $0.name == "grpc-status" }?.value }
    func message(_ stream: UInt32) -> String? {
        headers[stream]?.last?.first { $0.name == "grpc-message" }.map { GRPCStatus.percentDecoded($0.value) }
    }
    func frames(_ kind: HTTP2Frame.Kind) -> [HTTP2Frame] { frames.filter { $0.kind == kind } }
}

@Suite struct HTTP2ServerConnectionTests {
    static let request = ControlProto.Request(uid: "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", role: "PROD", numConn: 2, rate: 100).encoded

    /// Feeds `bytes` in one piece; returns the output and the calls.
    static func run(_ bytes: [UInt8], connection: inout HTTP2ServerConnection, output: inout ServerOutput) throws -> [GRPCCall] {
        let (out, calls) = try connection.receive(bytes)
        try output.take(out)
        return calls
    }

    @Test func aUnaryCallAndItsAnswer() throws {
        var connection = HTTP2ServerConnection()
        var output = ServerOutput()
        try output.take(connection.start())
        let calls = try Self.run(ClientFrames.opening + ClientFrames.call(stream: 1, path: "/scistream.Control/req", message: Self.request),
                                 connection: &connection, output: &output)
        #expect(calls == [GRPCCall(streamID: 1, path: "/scistream.Control/req",
                                   metadata: [HeaderField("content-type", "application/grpc"), HeaderField("te", "trailers"), HeaderField("authorization", "INVALID_TOKEN")],
                                   message: Self.request)])
        #expect(output.frames(.settings).count == 2)  // ours, and the ACK of the client's
        #expect(output.frames(.settings).last?.has(HTTP2Frame.Flag.ack) == true)
        let answer = ControlProto.Response(listeners: ["127.0.0.1:5100"], prodListeners: []).encoded
        try output.take(connection.respond(1, .message(answer)))
        #expect(output.data[1] == GRPCStatus.framed(answer))
        #expect(output.headers[1]?.first == [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")])
        #expect(output.status(1) == "0")
        #expect(output.frames.last?.has(HTTP2Frame.Flag.endStream) == true)
        #expect(connection.activeStreamCount == 0)
    }

    @Test func twoCallsInterleavedOnOneConnection() throws {
        // The original s2uc sends req and hello on one connection; req is answered after hello.
        var connection = HTTP2ServerConnection()
        var output = ServerOutput()
        var calls = try Self.run(ClientFrames.opening + ClientFrames.call(stream: 1, path: "/scistream.Control/req", message: Self.request),
                                 connection: &connection, output: &output)
        calls += try Self.run(ClientFrames.call(stream: 3, path: "/scistream.Control/hello", message: []), connection: &connection, output: &output)
        #expect(calls.map(\.streamID) == [1, 3])
        try output.take(connection.respond(3, .message([])))
        try output.take(connection.respond(1, .failure(code: 8, message: "no ports: 100% used")))
        #expect(output.status(3) == "0")
        #expect(output.status(1) == "8")
        #expect(output.message(1) == "no ports: 100% used")
    }

    @Test func answersWaitForFlowControlWindow() throws {
        var connection = HTTP2ServerConnection()
        var output = ServerOutput()
        let small = HTTP2Frame.settings([(.initialWindowSize, 10)])
        _ = try Self.run(http2Preface + small.encoded + ClientFrames.call(stream: 1, path: "/x", message: []), connection: &connection, output: &output)
        try output.take(connection.respond(1, .message([UInt8](repeating: 7, count: 30))))
        #expect(output.data[1]?.count == 10)
        #expect(output.status(1) == nil)
        _ = try Self.run(HTTP2Frame.windowUpdate(streamID: 1, increment: 100).encoded, connection: &connection, output: &output)
        #expect(output.data[1] == GRPCStatus.framed([UInt8](repeating: 7, count: 30)))
        #expect(output.status(1) == "0")
    }

    @Test func headersInContinuationsWithPaddingAndPriority() throws {
        var connection = HTTP2ServerConnection()
        var output = ServerOutput()
        let block = ClientFrames.requestHeaders(path: "/scistream.Control/release")
        let first = [UInt8(3)] + [0, 0, 0, 0, 16] + block.prefix(10) + [0, 0, 0]  // pad length 3, priority fields
        var bytes = ClientFrames.opening
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.padded | HTTP2Frame.Flag.priority, streamID: 1, payload: first).encoded
        bytes += HTTP2Frame(.continuation, streamID: 1, payload: Array(block[10..<20])).encoded
        bytes += HTTP2Frame(.continuation, flags: HTTP2Frame.Flag.endHeaders, streamID: 1, payload: Array(block[20...])).encoded
        bytes += HTTP2Frame(.data, streamID: 1, payload: Array(GRPCStatus.framed([1, 2, 3]).prefix(4))).encoded
        bytes += HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream | HTTP2Frame.Flag.padded, streamID: 1,
                            payload: [2] + Array(GRPCStatus.framed([1, 2, 3]).dropFirst(4)) + [0, 0]).encoded
        let calls = try Self.run(bytes, connection: &connection, output: &output)
        #expect(calls.map(\.path) == ["/scistream.Control/release"])
        #expect(calls.first?.message == [1, 2, 3])
        // Every DATA byte given back to the connection window.
        #expect(output.frames(.windowUpdate).filter { $0.streamID == 0 }.count == 2)
    }

    @Test func pingIsAnsweredAndStreamsOverTheLimitRefused() throws {
        var limits = HTTP2ServerConnection.Limits()
        limits.maxConcurrentStreams = 1
        var connection = HTTP2ServerConnection(limits: limits)
        var output = ServerOutput()
        var bytes = ClientFrames.opening + HTTP2Frame(.ping, streamID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8]).encoded
        bytes += ClientFrames.call(stream: 1, path: "/a", message: []) + ClientFrames.call(stream: 3, path: "/b", message: [])
        let calls = try Self.run(bytes, connection: &connection, output: &output)
        #expect(calls.map(\.streamID) == [1])
        #expect(output.frames(.ping) == [HTTP2Frame(.ping, flags: HTTP2Frame.Flag.ack, streamID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])])
        #expect(output.frames(.rstStream) == [HTTP2Frame.rstStream(streamID: 3, code: .refusedStream)])
    }

    @Test func badCallsFailTheirStreamOnly() throws {
        var limits = HTTP2ServerConnection.Limits()
        limits.maxMessageSize = 100
        var connection = HTTP2ServerConnection(limits: limits)
        var output = ServerOutput()
        var bytes = ClientFrames.opening
        // Compressed flag; two messages; no message; too big; GET.
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders, streamID: 1, payload: ClientFrames.requestHeaders(path: "/a")).encoded
        bytes += HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream, streamID: 1, payload: [1, 0, 0, 0, 0]).encoded
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders, streamID: 3, payload: ClientFrames.requestHeaders(path: "/a")).encoded
        bytes += HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream, streamID: 3, payload: GRPCStatus.framed([1]) + GRPCStatus.framed([2])).encoded
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders | HTTP2Frame.Flag.endStream, streamID: 5, payload: ClientFrames.requestHeaders(path: "/a")).encoded
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders, streamID: 7, payload: ClientFrames.requestHeaders(path: "/a")).encoded
        bytes += HTTP2Frame(.data, streamID: 7, payload: [UInt8](repeating: 0, count: 200)).encoded
        bytes += HTTP2Frame(.headers, flags: HTTP2Frame.Flag.endHeaders | HTTP2Frame.Flag.endStream, streamID: 9, payload: ClientFrames.requestHeaders(path: "/a", method: "GET")).encoded
        // A late DATA frame on the stream already refused is dropped.
        bytes += HTTP2Frame(.data, flags: HTTP2Frame.Flag.endStream, streamID: 7, payload: [0]).encoded
        let calls = try Self.run(bytes, connection: &connection, output: &output)
        #expect(calls.isEmpty)
        #expect(output.status(1) == "12")
        #expect(output.status(3) == "3")
        #expect(output.status(5) == "3")
        #expect(output.status(7) == "8")
        #expect(output.status(9) == "12")
        #expect(output.frames(.rstStream).map(\.streamID) == [7])
        #expect(connection.activeStreamCount == 0)
    }

    static let badConversations: [(String, [UInt8])] = {
        let opening: [UInt8] = ClientFrames.opening
        var list: [(String, [UInt8])] = []
        let bytes3: [UInt8] = Array("POST / HTTP/1.1\r\n\r\n".utf8)
        list.append(("no preface", bytes3))
        let bytes5: [UInt8] = http2Preface + HTTP2Frame(.headers, flags: 4, streamID: 1, payload: [0x82]).encoded
        list.append(("HEADERS before SETTINGS", bytes5))
        let bytes7: [UInt8] = opening + [0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0, 1]
        list.append(("oversized frame", bytes7))
        let bytes9: [UInt8] = opening + HTTP2Frame(.headers, flags: 4, streamID: 2, payload: [0x83]).encoded
        list.append(("even stream", bytes9))
        let bytes11: [UInt8] = opening + HTTP2Frame(.headers, flags: 4, streamID: 1, payload: [0xFF, 0x10]).encoded
        list.append(("bad HPACK index", bytes11))
        let bytes13: [UInt8] = opening + HTTP2Frame(.headers, streamID: 1, payload: [0x83]).encoded + HTTP2Frame(.ping, streamID: 0, payload: [UInt8](repeating: 0, count: 8)).encoded
        list.append(("interrupted header block", bytes13))
        let bytes15: [UInt8] = opening + HTTP2Frame(.continuation, flags: 4, streamID: 1, payload: [0x83]).encoded
        list.append(("CONTINUATION alone", bytes15))
        let bytes17: [UInt8] = opening + HTTP2Frame.windowUpdate(streamID: 0, increment: 0x7FFF_FFFF).encoded
        list.append(("window overflow", bytes17))
        let bytes19: [UInt8] = opening + HTTP2Frame(.settings, streamID: 0, payload: [0, 4, 0]).encoded
        list.append(("bad SETTINGS length", bytes19))
        let bytes21: [UInt8] = opening + HTTP2Frame(.headers, flags: 0x0C, streamID: 1, payload: [9, 0x83]).encoded
        list.append(("padding past the end", bytes21))
        let bytes23: [UInt8] = opening + HTTP2Frame(.pushPromise, streamID: 1, payload: [0, 0, 0, 2]).encoded
        list.append(("PUSH_PROMISE", bytes23))
        let bytes25: [UInt8] = opening + ClientFrames.call(stream: 3, path: "/a", message: []) + ClientFrames.call(stream: 1, path: "/a", message: [])
        list.append(("stream reused", bytes25))
        let bytes27: [UInt8] = opening + HTTP2Frame(.headers, streamID: 1, payload: [UInt8](repeating: 0x82, count: 16000)).encoded
            + HTTP2Frame(.continuation, flags: 4, streamID: 1, payload: [UInt8](repeating: 0x82, count: 1000)).encoded
        list.append(("header block too big", bytes27))
        return list
    }()

    @Test(arguments: badConversations)
    func connectionErrors(_ name: String, _ bytes: [UInt8]) {
        var connection = HTTP2ServerConnection()
        #expect(throws: GRPCWireError.self, "\(name)") { _ = try connection.receive(bytes) }
    }

    /// The same conversation byte by byte and in random pieces gives the same calls.
    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func anySplitGivesTheSameCalls(seed: UInt64) throws {
        let bytes = ClientFrames.opening + ClientFrames.call(stream: 1, path: "/scistream.Control/req", message: Self.request)
            + ClientFrames.call(stream: 3, path: "/scistream.Control/hello", message: Self.request)
        var random = SeededGenerator(seed: seed)
        var connection = HTTP2ServerConnection()
        var calls: [GRPCCall] = []
        var index = 0
        while index < bytes.count {
            let size = seed == 1 ? 1 : Int(random.next() % 40) + 1
            let end = min(bytes.count, index + size)
            calls += try connection.receive(Array(bytes[index..<end])).calls
            index = end
        }
        #expect(calls.map(\.streamID) == [1, 3])
        #expect(calls.allSatisfy { $0.message == Self.request })
    }

    /// Random bytes, random frames and corrupted conversations: an error or calls, never a crash,
    /// and the connection's buffers stay bounded.
    @Test(arguments: 1...200 as ClosedRange<UInt64>)
    func fuzz(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var bytes = ClientFrames.opening + ClientFrames.call(stream: 1, path: "/scistream.Control/req", message: Self.request)
        switch seed % 4 {
        case 0:  // flip bytes after the preface
            for _ in 0..<Int(random.next() % 8 + 1) {
                let index = 24 + Int(random.next() % UInt64(bytes.count - 24))
                bytes[index] = UInt8(truncatingIfNeeded: random.next())
            }
        case 1:  // truncate and append garbage frames of random types
            bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count))))
            for _ in 0..<8 {
                let payload = (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                bytes += HTTP2Frame(type: UInt8(random.next() % 12), flags: UInt8(truncatingIfNeeded: random.next()),
                                    streamID: UInt32(random.next() % 6), payload: payload).encoded
            }
        case 2:  // random header blocks
            bytes = ClientFrames.opening
            for stream in stride(from: UInt32(1), to: 20, by: 2) {
                let block = (0..<Int(random.next() % 60)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                bytes += HTTP2Frame(.headers, flags: 5, streamID: stream, payload: block).encoded
            }
        default:  // pure noise after the preface
            bytes = http2Preface + (0..<Int(random.next() % 400)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        var connection = HTTP2ServerConnection()
        var index = 0
        while index < bytes.count {
            let end = min(bytes.count, index + Int(random.next() % 64) + 1)
            do {
                let (_, calls) = try connection.receive(Array(bytes[index..<end]))
                for call in calls { _ = connection.respond(call.streamID, .failure(code: 3, message: "x")) }
            } catch {
                return
            }
            #expect(connection.bufferedByteCount <= 9 + 16384 + 16384)
            index = end
        }
    }
}
