// libFuzzer target: the control-protocol frame decoder.
// Any input must decode to messages or a WireError — never a crash, a hang or unbounded memory —
// and every decoded message must re-encode to a frame that decodes to the same message.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Feed in two pieces, split at a point taken from the input, to exercise partial frames.
    let split = size > 0 ? Int(bytes[0]) % (size + 1) : 0
    var decoder = FrameDecoder()
    decoder.append(bytes[..<split])
    var messages: [Message] = []
    var failed = false
    func drain() {
        while !failed {
            do {
                guard let message = try decoder.nextMessage() else { return }
                messages.append(message)
            } catch {
                _ = error.description
                failed = true
            }
        }
    }
    drain()
    decoder.append(bytes[split...])
    drain()
    precondition(decoder.bufferedByteCount <= WireConstants.maxFrameLength + WireConstants.lengthPrefixSize,
                 "decoder buffered more than one frame's worth")
    for message in messages {
        let frame = message.encoded()
        var again = FrameDecoder()
        again.append(frame)
        let decoded = try? again.nextMessage()
        precondition(decoded == message, "re-encoded frame does not decode to the same message: \(message)")
    }
    return 0
}
