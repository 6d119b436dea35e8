/// A bidirectional byte stream: a plain TCP socket or a TLS session over one.
/// One task uses a stream at a time.
public protocol ByteStream: AnyObject, Sendable {
    /// Reads up to `max` bytes; an empty result means the peer closed the stream.
    func read(max: Int, deadline: ContinuousClock.Instant?) async throws(StreamError) -> [UInt8]
    /// Writes every byte, or throws.
    func writeAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws(StreamError)
    /// Closes the stream (idempotent).
    func close()
}

/// Why a read or a write on a `ByteStream` failed: the `kind` to switch on (a deadline that passed
/// is `.timedOut` whether the stream is TLS or not), and what the layer underneath said (an
/// `Errno`, a `TLSError`) as `cause`, for the operators' wording and the logs.
public struct StreamError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The deadline passed.
        case timedOut
        /// The connection is closed: by the peer (reset, broken pipe) or by this side.
        case closed
        /// The waiting task was cancelled.
        case cancelled
        /// Anything else: a socket error, a bad TLS record, an alert.
        case failed
    }

    public let kind: Kind
    public let cause: any Error & Sendable

    public init(_ kind: Kind, cause: any Error & Sendable) {
        self.kind = kind
        self.cause = cause
    }

    /// A socket-level failure (an `Errno`, or the reactor's `CancellationError`) by its kind.
    public init(socket error: any Error) {
        switch error {
        case let errno as Errno:
            switch errno {
            case .timedOut: self.init(.timedOut, cause: errno)
            case .connectionReset, .brokenPipe, .badFileDescriptor: self.init(.closed, cause: errno)
            default: self.init(.failed, cause: errno)
            }
        case let cancelled as CancellationError:
            self.init(.cancelled, cause: cancelled)
        default:
            self.init(.failed, cause: Unexpected(description: "\(error)"))
        }
    }

    public var description: String { "\(cause)" }

    /// An error of a type the sockets do not throw, kept as its text.
    private struct Unexpected: Error, Sendable, CustomStringConvertible {
        let description: String
    }
}
