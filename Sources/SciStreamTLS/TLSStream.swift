#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import SciStreamSystem

/// A TLS session over a non-blocking TCP socket.
///
/// Like every `ByteStream`, one task at a time reads or writes it; that is the contract that makes
/// it `@unchecked Sendable`. `close()` may come from any task: the OpenSSL state sits behind the
/// Mutex in `TLSConnection`, which is never held across an await.
///
/// Nothing here blocks a thread: when OpenSSL wants bytes, the task awaits the reactor. Bytes go
/// out with MSG_NOSIGNAL, so a peer that has gone away gives `.closed`, not SIGPIPE.
///
/// `connect` and `accept` take over the socket only when they succeed: on failure it stays open
/// and is the caller's (to write a plaintext error frame to, or to close).
public final class TLSStream: ByteStream, @unchecked Sendable {
    private let connection: TLSConnection
    private let socket: Socket

    private init(connection: TLSConnection) {
        self.connection = connection
        self.socket = connection.socket
    }

    deinit {
        close()
    }

    /// The peer as `host:port` (the server name given to `connect`, on the client side), for messages.
    public var peer: String { connection.peer }

    /// The peer's socket address, or nil once closed.
    public var peerAddress: SocketAddress? { socket.peerAddress }

    /// The negotiated protocol ("TLSv1.3"), or nil once closed.
    public var protocolVersion: String? { connection.protocolVersion }

    /// The protocol agreed by ALPN ("h2" for a gRPC client), or nil.
    public var alpnProtocol: String? { connection.alpnProtocol }

    // MARK: - Opening

    /// Client side: the TLS handshake over a connected socket, verifying the server's certificate
    /// chain against the context's trust anchor and its name: an IP literal `serverName` (v4 or v6)
    /// must be an IP SAN, a host name a DNS SAN (also sent as SNI).
    public static func connect(
        socket: Socket, context: TLSContext, serverName: String, deadline: ContinuousClock.Instant?
    ) async throws(TLSError) -> TLSStream {
        let peer: String
        if let address = socket.peerAddress {
            peer = ServerName.ipLiteral(serverName) != nil ? address.description : "\(serverName):\(address.port)"
        } else {
            peer = serverName
        }
        guard context.side == .client else {
            throw TLSError(.setupFailed(reason: "TLSStream.connect needs a client context"), side: .client, peer: peer)
        }
        let connection = try TLSConnection(context: context, socket: socket, peer: peer)
        do {
            try connection.expect(serverName: serverName)
            try await connection.handshake(deadline: deadline, expectedName: ServerName.ipLiteral(serverName) ?? serverName)
        } catch {
            connection.free()
            throw error
        }
        return TLSStream(connection: connection)
    }

    /// Server side: the TLS handshake on an accepted socket. First it waits for the client's first
    /// byte and peeks at it (MSG_PEEK, nothing consumed): anything but a TLS handshake record
    /// (0x16) throws `.peerIsPlaintext` and leaves those bytes for the caller to read.
    public static func accept(
        socket: Socket, context: TLSContext, deadline: ContinuousClock.Instant?
    ) async throws(TLSError) -> TLSStream {
        let peer = socket.peerAddress?.description ?? "the client"
        guard context.side == .server else {
            throw TLSError(.setupFailed(reason: "TLSStream.accept needs a server context"), side: .server, peer: peer)
        }
        try await waitForHandshakeRecord(socket: socket, peer: peer, deadline: deadline)
        let connection = try TLSConnection(context: context, socket: socket, peer: peer)
        do {
            try await connection.handshake(deadline: deadline, expectedName: nil)
        } catch {
            connection.free()
            throw error
        }
        return TLSStream(connection: connection)
    }

    /// Waits until the client has sent something, and checks that it starts a TLS handshake.
    private static func waitForHandshakeRecord(
        socket: Socket, peer: String, deadline: ContinuousClock.Instant?
    ) async throws(TLSError) {
        while true {
            let fd = socket.fd
            guard fd >= 0 else { throw TLSError(.closed, side: .server, peer: peer, detail: "closed by this side") }
            var first: UInt8 = 0
            let count = recv(fd, &first, 1, Int32(MSG_PEEK))
            if count == 1 {
                guard first == 0x16 else { throw TLSError(.peerIsPlaintext, side: .server, peer: peer) }
                return
            }
            if count == 0 {
                throw TLSError(.closed, side: .server, peer: peer,
                               detail: "the client closed the connection before starting a TLS handshake")
            }
            let error = Errno.current
            if error == .interrupted { continue }
            guard error == .wouldBlock else {
                throw TLSError(.connectionFailed(reason: error.description), side: .server, peer: peer)
            }
            do {
                try await Reactor.shared.wait(fd, for: .readable, deadline: deadline)
            } catch let error as Errno where error == .timedOut {
                throw TLSError(.timedOut, side: .server, peer: peer,
                               detail: "waiting for the client \(peer) to start the TLS handshake")
            } catch is CancellationError {
                throw TLSError(.cancelled, side: .server, peer: peer)
            } catch {
                throw TLSError(.connectionFailed(reason: "\(error)"), side: .server, peer: peer)
            }
        }
    }

    // MARK: - ByteStream

    /// Reads up to `max` bytes of application data; `[]` when the peer closed (close_notify or EOF).
    public func read(max: Int, deadline: ContinuousClock.Instant?) async throws(StreamError) -> [UInt8] {
        do {
            return try await readRecord(max: max, deadline: deadline)
        } catch {
            throw error.streamError
        }
    }

    /// Writes every byte (in records of at most 16 KiB), or throws.
    public func writeAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws(StreamError) {
        do {
            try await writeRecords(bytes, deadline: deadline)
        } catch {
            throw error.streamError
        }
    }

    private func readRecord(max: Int, deadline: ContinuousClock.Instant?) async throws(TLSError) -> [UInt8] {
        guard max > 0, !connection.isPeerClosed else { return [] }
        // One SSL_read returns at most one record's plaintext (16 KiB): a bigger buffer is waste.
        // The buffer exists only during each SSL_read, not while the task waits for the peer: an idle
        // connection (a pending request waiting for its hello) holds none.
        let capacity = min(max, 16 * 1024)
        var received: [UInt8] = []
        let outcome = try await connection.perform(deadline: deadline, phase: .reading) { ssl in
            var result: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
                result = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
                initialized = result > 0 ? Int(result) : 0
            }
            if result > 0 { received = bytes }
            return result
        }
        switch outcome {
        case .done:
            return received
        case .peerClosed:
            return []
        case .failed(let step):
            throw streamError(step)
        }
    }

    private func writeRecords(_ bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws(TLSError) {
        var offset = 0
        while offset < bytes.count {
            let chunk = min(16 * 1024, bytes.count - offset)
            let start = offset
            let outcome = try await connection.perform(deadline: deadline, phase: .writing) { ssl in
                bytes.withUnsafeBytes { raw -> Int32 in
                    guard let base = raw.baseAddress else { return 0 }
                    return SSL_write(ssl, base + start, Int32(chunk))
                }
            }
            switch outcome {
            case .done(let count):
                offset += Int(count)
            case .peerClosed:
                throw TLSError(.closed, side: connection.side, peer: peer, detail: "the peer closed the connection")
            case .failed(let step):
                throw streamError(step)
            }
        }
    }

    /// Sends close_notify if it can without waiting, then closes the socket. Idempotent.
    public func close() {
        connection.shutdown()
        socket.close()
    }

    private func streamError(_ step: TLSConnection.Step) -> TLSError {
        let reason = step.errors.isEmpty ? "OpenSSL error \(step.code)" : step.errors.reasons
        return TLSError(.connectionFailed(reason: reason), side: connection.side, peer: peer,
                        openSSLErrors: step.errors.lines)
    }
}

extension TLSError {
    /// This error as a stream's: its kind for callers to switch on, itself as the cause.
    var streamError: StreamError {
        switch kind {
        case .timedOut: StreamError(.timedOut, cause: self)
        case .closed: StreamError(.closed, cause: self)
        case .cancelled: StreamError(.cancelled, cause: self)
        default: StreamError(.failed, cause: self)
        }
    }
}
