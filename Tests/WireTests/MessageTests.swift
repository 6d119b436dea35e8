import SciStreamWire
import SciStreamCommandLine
import Testing

@Suite struct MessageTests {
    @Test func samplesCoverEveryKind() {
        #expect(Set(sampleMessages.map(\.kind)) == allKinds)
    }

    @Test(arguments: sampleMessages)
    func roundTrip(_ message: Message) throws {
        let frame = message.encoded()
        #expect(try Message(decoding: frame) == message)
        #expect(try message.checkedEncoded() == frame)
    }

    @Test(arguments: sampleMessages)
    func frameHeader(_ message: Message) {
        let frame = message.encoded()
        let length = frame[0..<4].reduce(0) { $0 << 8 | Int($1) }
        #expect(length == frame.count - 4)
        #expect(frame[4] == WireConstants.version)
        #expect(frame[5] == message.kind)
        #expect(message.isReply == (message.kind >= 0x80))
    }

    @Test func kindsAndNames() {
        let uniqueNames = Set(sampleMessages.map(\.name))
        #expect(uniqueNames.count == allKinds.count)
        #expect(Message.helloReply(.ok).name == "hello-reply")
        #expect(Message.request(Request(token: "secret", uid: mockUID, role: .prod, numConn: 1, rate: 1, listenPorts: []))
            .name == "request")
    }

    @Test func roleAndStatusNames() {
        #expect(Role.prod.description == "PROD")
        #expect(Role.cons.description == "CONS")
        #expect(Role(rawValue: 1) == .prod && Role(rawValue: 2) == .cons && Role(rawValue: 0) == nil)
        let names = allStatusCodes.map(\.description)
        #expect(names == ["OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                          "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                          "UNAUTHENTICATED"])
        #expect(allStatusCodes.map(\.rawValue) == [0, 3, 4, 5, 6, 7, 8, 12, 13, 14, 16])
        #expect(Status.ok == Status(.ok, ""))
        #expect(Status.ok.isOK)
        #expect(Status(.notFound, "no session x").description == "NOT_FOUND: no session x")
        #expect(Status(.unavailable).description == "UNAVAILABLE")
    }

    @Test func everyDefinedStatusCodeDecodesAndNoOtherDoes() throws {
        for code in 0...255 {
            let frame: [UInt8] = [0, 0, 0, 5, 1, 0x82, UInt8(code), 0, 0]
            if let expected = StatusCode(rawValue: UInt8(code)) {
                #expect(try Message(decoding: frame) == .helloReply(Status(expected)))
            } else {
                #expect(throws: WireError.invalidStatus(UInt8(code))) { try Message(decoding: frame) }
            }
        }
    }

    @Test func overlongStringIsCutAtACharacterBoundaryOrRejectedWhenChecked() throws {
        // 'é' is two bytes: 40 000 of them is 80 000 bytes, cut to 65 534 (an odd cut would split one).
        let message = Message.error(Status(.internalError, String(repeating: "é", count: 40_000)))
        #expect(throws: WireError.stringTooLong("Status.message", 80_000)) { try message.checkedEncoded() }
        guard case .error(let status) = try Message(decoding: message.encoded()) else {
            Issue.record("wrong kind")
            return
        }
        #expect(status.message.utf8.count == 65_534)
        #expect(status.message == String(repeating: "é", count: 32_767))
    }

    @Test func overlongListIsCutOrRejectedWhenChecked() throws {
        let ports = (1...5000).map { UInt16($0) }
        let message = Message.request(Request(token: "", uid: zeroUID, role: .prod, numConn: 1, rate: 1, listenPorts: ports))
        #expect(throws: WireError.tooManyItems("Request.listenPorts", 5000)) { try message.checkedEncoded() }
        guard case .request(let request) = try Message(decoding: message.encoded()) else {
            Issue.record("wrong kind")
            return
        }
        #expect(request.listenPorts == Array(ports.prefix(WireConstants.maxListCount)))
    }

    @Test func listAtTheLimitRoundTrips() throws {
        let listeners = (0..<WireConstants.maxListCount).map { "10.0.\($0 / 256).\($0 % 256):5001" }
        let message = Message.hello(Hello(token: token, uid: mockUID, role: .prod, prodListeners: listeners))
        #expect(try Message(decoding: message.checkedEncoded()) == message)
    }

    @Test func frameOverTheLimitIsRejectedWhenChecked() throws {
        let big = String(repeating: "x", count: 60_000)
        let session = SessionInfo(uid: big, role: .prod, state: "", listeners: [], targets: [], note: "")
        let message = Message.listReply(ListReply(status: .ok, sessions: Array(repeating: session, count: 20)))
        #expect(throws: WireError.frameTooLarge(2 + 3 + 2 + 20 * 60_011)) { try message.checkedEncoded() }
        // The unchecked frame is what it is; a default decoder refuses it by its length alone.
        #expect(throws: WireError.frameTooLarge(2 + 3 + 2 + 20 * 60_011)) { try Message(decoding: message.encoded()) }
        #expect(try Message(decoding: message.encoded(), maxFrameLength: 2_000_000) == message)
    }

    @Test func wholeFrameDecodingRejectsShortAndLongInput() {
        let frame = Message.list(ListSessions(token: token)).encoded()
        #expect(throws: WireError.incompleteFrame(frame.count - 1)) { try Message(decoding: frame.dropLast()) }
        #expect(throws: WireError.trailingBytes(3)) { try Message(decoding: frame + [0, 0, 0]) }
        #expect(throws: WireError.incompleteFrame(0)) { try Message(decoding: [UInt8]()) }
    }

    @Test func errorDescriptionsAreSingleReadableLines() {
        let errors: [WireError] = [
            .frameTooLarge(369_295_618), .unsupportedVersion(2), .unknownKind(0x07), .truncated("Release.uid"),
            .invalidUTF8("Hello.token"), .invalidRole(3), .invalidStatus(1), .tooManyItems("Hello.prodListeners", 4097),
            .trailingBytes(1), .trailingBytes(2), .emptyFrame, .incompleteFrame(7), .stringTooLong("Status.message", 70_000),
        ]
        for error in errors {
            #expect(!error.description.isEmpty)
            #expect(!error.description.contains("\n"))
            #expect(error.status.code == .invalidArgument)
            #expect(error.status.message == error.description)
        }
        #expect(WireError.unknownKind(0x07).description.contains("0x07"))
        // The wire names no command-line option; s2cs and s2uc add the one that fixes it.
        #expect(!WireError.frameTooLarge(369_295_618).description.contains("--ssl"))
        #expect(ErrorWording.wire(.frameTooLarge(369_295_618)).contains("--ssl"))
        #expect(WireError.trailingBytes(1).description.hasPrefix("1 unexpected byte after"))
    }
}
