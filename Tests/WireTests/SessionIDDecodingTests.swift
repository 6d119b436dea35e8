import SciStreamWire
import Testing

/// A message's uid is decoded into a `SessionID`: a whole frame whose uid is not one is refused at
/// decoding, naming the kind (the server answers with that kind's reply) and the text as sent.
@Suite struct SessionIDDecodingTests {
    /// `frame` with the 36 bytes of the mock uid replaced by `text` (36 bytes too: the frame stays whole).
    static func replacingUID(in frame: [UInt8], with text: String) -> [UInt8] {
        let uid = Array(SessionID.mock.text.utf8), replacement = Array(text.utf8)
        precondition(replacement.count == uid.count)
        guard let start = frame.indices.first(where: { Array(frame[$0..<min($0 + uid.count, frame.count)]) == uid }) else { return frame }
        var bytes = frame
        bytes.replaceSubrange(start..<start + uid.count, with: replacement)
        return bytes
    }

    static let bad = "zf8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"

    @Test(arguments: [
        Message.request(Request(token: token, uid: .mock, role: .prod, numConn: 5, rate: 0, listenPorts: [])),
        Message.hello(Hello(token: token, uid: .mock, role: .prod, prodListeners: ["10.0.1.5:5001"])),
        Message.update(Update(token: token, uid: .mock, role: .cons, remoteListeners: ["10.0.1.5:5100"])),
    ])
    func invalidUIDIsRefusedAtDecoding(_ message: Message) {
        let frame = Self.replacingUID(in: message.encoded(), with: Self.bad)
        #expect(frame != message.encoded())
        #expect(throws: WireError.invalidSessionID(kind: message.kind, text: Self.bad)) { try Message(decoding: frame) }
        // The same words and status the server used to answer with (INVALID_ARGUMENT).
        let status = WireError.invalidSessionID(kind: message.kind, text: Self.bad).status
        #expect(status.code == .invalidArgument)
        #expect(status.message == ValidationError.invalidSessionID(Self.bad).description)
    }

    @Test func theDecoderReadsOnAfterARefusedUID() throws {
        let bad = Self.replacingUID(in: Message.hello(Hello(token: token, uid: .mock, role: .prod, prodListeners: [])).encoded(), with: Self.bad)
        let good = Message.release(Release(token: token, uid: .mock))
        var decoder = FrameDecoder()
        decoder.append(bad + good.encoded())
        #expect(throws: WireError.invalidSessionID(kind: 0x02, text: Self.bad)) { try decoder.nextMessage() }
        #expect(try decoder.nextMessage() == good)
    }

    @Test func uppercaseUIDDecodesToTheSameID() throws {
        let frame = Self.replacingUID(in: Message.hello(Hello(token: token, uid: .mock, role: .prod, prodListeners: [])).encoded(),
                                      with: SessionID.mock.text.uppercased())
        guard case .hello(let hello) = try Message(decoding: frame) else { Issue.record("not a hello"); return }
        #expect(hello.uid == .mock)
    }

    @Test func aReleaseNamesItsSessionByUIDOrByOtherText() throws {
        for (text, expected) in [(SessionID.mock.text, SessionName.uid(.mock)), ("4f8583bc", .other("4f8583bc")), (Self.bad, .other(Self.bad))] {
            let frame = Message.release(Release(token: token, session: .other(text))).encoded()
            #expect(try Message(decoding: frame) == .release(Release(token: token, session: expected)))
        }
    }
}
