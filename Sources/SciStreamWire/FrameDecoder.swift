/// Cuts a byte stream into frames and decodes each into a `Message`.
///
/// A two-state machine in the manner of swift-nio-extras' `LengthFieldBasedFrameDecoder`: wait for the
/// 4-byte length, check it against the maximum before buffering anything for it, then wait for that many
/// bytes. It knows only frames; what a message means is the server's and client's business.
///
/// Errors:
/// - `.frameTooLarge` leaves the decoder failed: the stream cannot be resynchronised, so every later call to
///   `nextMessage` throws the same error and appended bytes are dropped. Answer `error` and close.
/// - Any other error concerns one frame, which has been consumed; the stream stays in sync (the server still
///   answers `error` and closes, but a decoder in a test may carry on).
public struct FrameDecoder: Sendable {
    private enum State: Sendable {
        case waitingForHeader
        case waitingForFrame(length: Int)
        case failed(WireError)
    }

    private let maxFrameLength: Int
    private var state = State.waitingForHeader
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(maxFrameLength: Int = WireConstants.maxFrameLength) {
        self.maxFrameLength = max(0, maxFrameLength)
    }

    /// Bytes received and not yet consumed by a decoded frame.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        if case .failed = state { return }
        buffer.append(contentsOf: bytes)
    }

    /// The next message, or nil if more bytes are needed.
    public mutating func nextMessage() throws(WireError) -> Message? {
        if case .failed(let error) = state { throw error }
        if case .waitingForHeader = state {
            guard let length = try readLengthPrefix() else { return nil }
            state = .waitingForFrame(length: length)
        }
        guard case .waitingForFrame(let length) = state, bufferedByteCount >= length else { return nil }
        let payload = buffer[readIndex..<(readIndex + length)]
        readIndex += length
        state = .waitingForHeader
        defer { compact() }
        if length == 0 { throw .emptyFrame }
        return try Message.decode(payload: payload)
    }

    /// Call at the end of the stream: throws `.incompleteFrame` if part of a frame is buffered.
    public func finish() throws(WireError) {
        if case .failed(let error) = state { throw error }
        let pending: Int
        if case .waitingForFrame = state {
            pending = WireConstants.lengthPrefixSize + bufferedByteCount
        } else {
            pending = bufferedByteCount
        }
        guard pending == 0 else { throw .incompleteFrame(pending) }
    }

    /// Reads and checks the length prefix; nil if fewer than 4 bytes are buffered.
    private mutating func readLengthPrefix() throws(WireError) -> Int? {
        guard bufferedByteCount >= WireConstants.lengthPrefixSize else { return nil }
        var reader = ByteReader(buffer[readIndex..<(readIndex + WireConstants.lengthPrefixSize)])
        let raw = try reader.readU32("length")
        readIndex += WireConstants.lengthPrefixSize
        guard let length = Int(exactly: raw), length <= maxFrameLength else {
            let error = WireError.frameTooLarge(Int(exactly: raw) ?? Int.max)
            state = .failed(error)
            buffer = []
            readIndex = 0
            throw error
        }
        return length
    }

    /// Drops consumed bytes once they are the larger part of the buffer.
    private mutating func compact() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
            readIndex = 0
        } else if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}
