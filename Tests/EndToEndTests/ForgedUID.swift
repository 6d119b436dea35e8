import SciStreamWire

/// `message`'s frame (built with the mock uid) with that uid replaced by `text`, any text at all: what
/// a client that does not check its uids sends. s2uc cannot: its messages carry a `SessionID`.
func frame(_ message: Message, forgingUID text: String) -> [UInt8] {
    var bytes = message.encoded()
    let mock = Array(SessionID.mock.text.utf8)
    let field = [0x00, UInt8(mock.count)] + mock  // u16 length, then the uid's bytes
    guard let start = bytes.indices.first(where: { Array(bytes[$0..<min($0 + field.count, bytes.count)]) == field }) else { return bytes }
    let forged = Array(text.utf8)
    bytes.replaceSubrange(start..<start + field.count, with: [UInt8(forged.count >> 8), UInt8(forged.count & 0xFF)] + forged)
    let length = UInt32(bytes.count - 4)
    bytes.replaceSubrange(0..<4, with: [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)])
    return bytes
}

/// The replies to raw `bytes` sent to a plaintext s2cs on `port` (the connection half-closed after them).
func repliesToForgedFrames(_ bytes: [UInt8], port: UInt16) async throws -> [Message] {
    WireRobustnessTests.decodeAll(try await WireRobustnessTests.exchange(bytes, port: port, halfClose: true))
}

extension SessionID {
    /// The session id of a uid a test made with `SessionID.random()` (and also passes to s2uc as text).
    static func checked(_ uid: String) -> SessionID {
        SessionID(uid)!  // safe: SessionID.random() makes only canonical uids
    }
}
