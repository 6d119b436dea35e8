/// A bidirectional byte stream: a plain TCP socket or a TLS session over one.
/// One task uses a stream at a time.
public protocol ByteStream: AnyObject, Sendable {
    /// Reads up to `max` bytes; an empty result means the peer closed the stream.
    func read(max: Int, deadline: ContinuousClock.Instant?) async throws -> [UInt8]
    /// Writes every byte, or throws.
    func writeAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws
    /// Closes the stream (idempotent).
    func close()
}
