/// Limits of the SciStream control protocol (see `docs/protocol.md`).
public enum WireConstants {
    /// The protocol version this build speaks; the first byte after the length prefix of every frame.
    public static let version: UInt8 = 1

    /// The largest frame length (the value of the length prefix) a decoder accepts by default: 1 MiB.
    public static let maxFrameLength = 1 << 20

    /// Bytes in the length prefix that starts every frame.
    public static let lengthPrefixSize = 4

    /// The most items a list field may hold. A decoder rejects larger counts before reading any item.
    public static let maxListCount = 4096

    /// The most UTF-8 bytes a string field may hold (its length is a 16-bit number).
    public static let maxStringLength = Int(UInt16.max)
}
