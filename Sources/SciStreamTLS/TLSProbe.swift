/// Recognises a TLS client by its first bytes, for a plaintext server that peeks (MSG_PEEK) before
/// reading a frame, so that it can tell a TLS client what is wrong instead of reading garbage.
public enum TLSProbe {
    /// Whether `firstBytes` (one or more) can start a TLS ClientHello: a handshake record (0x16),
    /// then record version 3.x (0x03, 0x00...0x04). A SciStream frame starts with a 4-byte
    /// big-endian length of at most 1 MiB, so its first byte is 0x00: never 0x16.
    public static func looksLikeTLSClientHello(_ firstBytes: [UInt8]) -> Bool {
        guard let first = firstBytes.first, first == 0x16 else { return false }
        if firstBytes.count >= 2, firstBytes[1] != 0x03 { return false }
        if firstBytes.count >= 3, firstBytes[2] > 0x04 { return false }
        return true
    }
}
