import SciStreamWire
import Testing

@Suite struct FrameDecoderTests {
    /// Every sample frame, concatenated, in the order of `sampleMessages`.
    static let stream: [UInt8] = sampleMessages.flatMap { $0.encoded() }

    @Test func decodesAStreamAppendedAtOnce() throws {
        var decoder = FrameDecoder()
        decoder.append(Self.stream)
        #expect(try drain(&decoder) == sampleMessages)
        #expect(decoder.bufferedByteCount == 0)
        try decoder.finish()
    }

    @Test func decodesAStreamByteByByte() throws {
        var decoder = FrameDecoder()
        var messages: [Message] = []
        for byte in Self.stream {
            decoder.append(CollectionOfOne(byte))
            messages += try drain(&decoder)
        }
        #expect(messages == sampleMessages)
        try decoder.finish()
    }

    @Test(arguments: 1...50 as ClosedRange<UInt64>)
    func decodesAStreamInRandomChunks(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        var decoder = FrameDecoder()
        var messages: [Message] = []
        var offset = 0
        let maxChunk = [2, 7, 64, 1000][Int(seed % 4)]
        while offset < Self.stream.count {
            let size = min(Int.random(in: 1...maxChunk, using: &random), Self.stream.count - offset)
            decoder.append(Self.stream[offset..<(offset + size)])
            offset += size
            // Sometimes drain after several appends, to have more than one frame buffered.
            if Bool.random(using: &random) || offset == Self.stream.count {
                messages += try drain(&decoder)
            }
        }
        #expect(messages == sampleMessages)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func manyFramesThroughOneDecoder() throws {
        var decoder = FrameDecoder()
        let frame = Message.hello(Hello(token: token, uid: mockUID, role: .prod, prodListeners: ["10.0.1.5:5001"]))
            .encoded()
        var count = 0
        for _ in 0..<10_000 {
            decoder.append(frame)
            count += try drain(&decoder).count
        }
        #expect(count == 10_000)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test(arguments: sampleMessages)
    func aPartialFrameIsNilUntilCompleteAtEveryCutPoint(_ message: Message) throws {
        let frame = message.encoded()
        for cut in 0..<frame.count {
            var decoder = FrameDecoder()
            decoder.append(frame[0..<cut])
            #expect(try decoder.nextMessage() == nil)
            #expect(decoder.bufferedByteCount == (cut >= 4 ? cut - 4 : cut))
            if cut == 0 {
                try decoder.finish()
            } else {
                #expect(throws: WireError.incompleteFrame(cut)) { try decoder.finish() }
            }
            decoder.append(frame[cut...])
            #expect(try decoder.nextMessage() == message)
            #expect(try decoder.nextMessage() == nil)
        }
    }

    @Test(arguments: sampleMessages)
    func aFrameWhoseLengthCutsItsBodyIsTruncatedAtEveryCutPoint(_ message: Message) {
        let frame = message.encoded()
        let body = frame[6...]
        for cut in 0..<body.count {
            let length = UInt32(2 + cut)
            let short = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                         UInt8(length & 0xFF), frame[4], frame[5]] + body.prefix(cut)
            do {
                let decoded = try Message(decoding: short)
                Issue.record("a cut body decoded: \(decoded.name) at \(cut)")
            } catch {
                guard case .truncated = error else {
                    Issue.record("cut at \(cut) of \(message.name): \(error)")
                    continue
                }
            }
        }
    }

    @Test func aFrameOfOneByteEndsInsideTheKind() {
        #expect(throws: WireError.truncated("kind")) { try Message(decoding: [0, 0, 0, 1, 1]) }
    }

    @Test func aFourGigabyteLengthIsRejectedFromTheHeaderAlone() throws {
        var decoder = FrameDecoder()
        decoder.append([0xFF, 0xFF, 0xFF])
        #expect(try decoder.nextMessage() == nil)
        decoder.append([0xFF])
        #expect(throws: WireError.frameTooLarge(Int(UInt32.max))) { try decoder.nextMessage() }
        #expect(decoder.bufferedByteCount == 0)
        // The stream cannot be resynchronised: the decoder stays failed and drops what follows.
        decoder.append(Message.helloReply(.ok).encoded())
        #expect(decoder.bufferedByteCount == 0)
        #expect(throws: WireError.frameTooLarge(Int(UInt32.max))) { try decoder.nextMessage() }
        #expect(throws: WireError.frameTooLarge(Int(UInt32.max))) { try decoder.finish() }
    }

    @Test func theLimitIsInclusiveAndConfigurable() throws {
        let frame = Message.list(ListSessions(token: "abcd")).encoded()  // length 2 + 2 + 4 = 8
        var exact = FrameDecoder(maxFrameLength: 8)
        exact.append(frame)
        #expect(try exact.nextMessage() == .list(ListSessions(token: "abcd")))
        var tight = FrameDecoder(maxFrameLength: 7)
        tight.append(frame.prefix(4))
        #expect(throws: WireError.frameTooLarge(8)) { try tight.nextMessage() }
        var atDefault = FrameDecoder()
        atDefault.append([0x00, 0x10, 0x00, 0x00])  // exactly 1 MiB: accepted, waits for the body
        #expect(try atDefault.nextMessage() == nil)
        var overDefault = FrameDecoder()
        overDefault.append([0x00, 0x10, 0x00, 0x01])
        #expect(throws: WireError.frameTooLarge(WireConstants.maxFrameLength + 1)) { try overDefault.nextMessage() }
    }

    @Test func anUndecodableFrameIsConsumedAndTheNextOneStillDecodes() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 2, 1, 0x07])                         // unknown kind
        decoder.append([0, 0, 0, 0])                                  // empty frame
        decoder.append([0, 0, 0, 4, 9, 0x05, 0, 0])                   // unknown version
        decoder.append([0, 0, 0, 7, 1, 0x02, 0, 0, 0, 0, 0])          // bad role (0)
        decoder.append([0, 0, 0, 6, 1, 0x05, 0, 2, 0xFF, 0xFE])       // invalid UTF-8
        decoder.append([0, 0, 0, 6, 1, 0x84, 0, 0, 0, 0xAA])          // trailing bytes
        decoder.append(Message.releaseReply(.ok).encoded())
        #expect(throws: WireError.unknownKind(0x07)) { try decoder.nextMessage() }
        #expect(throws: WireError.emptyFrame) { try decoder.nextMessage() }
        #expect(throws: WireError.unsupportedVersion(9)) { try decoder.nextMessage() }
        #expect(throws: WireError.invalidRole(0)) { try decoder.nextMessage() }
        #expect(throws: WireError.invalidUTF8("ListSessions.token")) { try decoder.nextMessage() }
        #expect(throws: WireError.trailingBytes(1)) { try decoder.nextMessage() }
        #expect(try decoder.nextMessage() == .releaseReply(.ok))
        #expect(try decoder.nextMessage() == nil)
        try decoder.finish()
    }

    @Test func invalidUTF8IsRejectedInEveryStringPosition() {
        let badSequences: [[UInt8]] = [[0xFF], [0xC3], [0xC3, 0x28], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0x80],
                                       [0xF4, 0x90, 0x80, 0x80]]
        for bad in badSequences {
            let string = [UInt8(0), UInt8(bad.count)] + bad
            let empty: [UInt8] = [0, 0]
            let cases: [([UInt8], String)] = [
                ([0x05] + string, "ListSessions.token"),
                ([0x04] + empty + string, "Release.uid"),
                ([0x02] + empty + empty + [1, 0, 1] + string, "Hello.prodListeners"),
                ([0x82, 0] + string, "Status.message"),
                ([0x85, 0, 0, 0, 0, 1] + empty + [1] + string, "SessionInfo.state"),
            ]
            for (payload, field) in cases {
                let frame = [0, 0, 0, UInt8(payload.count + 1), 1] + payload
                #expect(throws: WireError.invalidUTF8(field)) { try Message(decoding: frame) }
            }
        }
    }

    @Test func roleBytesOtherThanOneAndTwoAreRejected() throws {
        for role in 0...255 {
            let frame: [UInt8] = [0, 0, 0, 9, 1, 0x02, 0, 0, 0, 0, UInt8(role), 0, 0]
            if role == 1 || role == 2 {
                // The role passes; the empty uid is then refused (it is checked once the rest is read).
                #expect(throws: WireError.invalidSessionID(kind: 0x02, text: "")) { try Message(decoding: frame) }
            } else {
                #expect(throws: WireError.invalidRole(UInt8(role))) { try Message(decoding: frame) }
            }
        }
    }

    @Test func everyUndefinedKindIsRejected() throws {
        for kind in 0...255 where !allKinds.contains(UInt8(kind)) {
            #expect(throws: WireError.unknownKind(UInt8(kind))) { try Message(decoding: [0, 0, 0, 2, 1, UInt8(kind)]) }
        }
        for version in 0...255 where version != 1 {
            #expect(throws: WireError.unsupportedVersion(UInt8(version))) {
                try Message(decoding: [0, 0, 0, 2, UInt8(version), 0x05])
            }
        }
    }

    /// Thousands of random frames: valid headers with random bodies, mutated valid frames, and random
    /// streams. The decoder may throw but must never trap, and must not buffer past the limit.
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func randomBytesNeverCrashTheDecoder(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var outcomes = (decoded: 0, rejected: 0)
        func decode(_ bytes: [UInt8], maxFrameLength: Int = WireConstants.maxFrameLength) {
            do {
                _ = try Message(decoding: bytes, maxFrameLength: maxFrameLength)
                outcomes.decoded += 1
            } catch {
                outcomes.rejected += 1
            }
        }
        let kinds = Array(allKinds) + [0x00, 0x06, 0x80, 0x86, 0xFE]
        for _ in 0..<2_000 {
            // A plausible header with a random body.
            let body = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let version: UInt8 = Int.random(in: 0..<10, using: &random) == 0 ? UInt8.random(in: 0...255, using: &random) : 1
            let kind = kinds.randomElement(using: &random) ?? 0
            let length = UInt32(body.count + 2)
            decode([UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF),
                    version, kind] + body)
        }
        let frames = sampleMessages.map { $0.encoded() }
        for _ in 0..<2_000 {
            // A valid frame with a few bytes changed, inserted or removed.
            var frame = frames.randomElement(using: &random) ?? []
            for _ in 0..<Int.random(in: 1...4, using: &random) where !frame.isEmpty {
                let index = Int.random(in: 0..<frame.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: frame[index] = UInt8.random(in: 0...255, using: &random)
                case 1: frame.insert(UInt8.random(in: 0...255, using: &random), at: index)
                default: frame.remove(at: index)
                }
            }
            decode(frame)
        }
        for _ in 0..<500 {
            // A random stream, fed in random chunks to a decoder with a small limit.
            var decoder = FrameDecoder(maxFrameLength: Int.random(in: 0...300, using: &random))
            let bytes = (0..<Int.random(in: 0...600, using: &random)).map { _ in
                UInt8.random(in: 0...(Bool.random(using: &random) ? 255 : 3), using: &random)
            }
            var offset = 0
            while offset < bytes.count {
                let size = min(Int.random(in: 1...32, using: &random), bytes.count - offset)
                decoder.append(bytes[offset..<(offset + size)])
                offset += size
                // Drain: a frame error consumes its frame, so carry on; a length over the limit is final.
                draining: while true {
                    do {
                        while try decoder.nextMessage() != nil { outcomes.decoded += 1 }
                        // Drained: at most a header, or less than one frame of at most the limit.
                        #expect(decoder.bufferedByteCount <= 300 + 3)
                        break draining
                    } catch .frameTooLarge {
                        outcomes.rejected += 1
                        #expect(decoder.bufferedByteCount == 0)
                        break draining
                    } catch {
                        outcomes.rejected += 1
                    }
                }
            }
        }
        #expect(outcomes.decoded + outcomes.rejected >= 4_000)
        #expect(outcomes.rejected > 0)
    }
}

/// Every message the decoder can produce from what it holds now.
func drain(_ decoder: inout FrameDecoder) throws -> [Message] {
    var messages: [Message] = []
    while let message = try decoder.nextMessage() {
        messages.append(message)
    }
    return messages
}
