import Foundation
import Testing
import SciStreamSystem
import SciStreamTLS
import SciStreamCommandLine

/// Real TLS over loopback, with certificates made by certs/make-dev-cert.sh.
@Suite struct TLSStreamTests {
    /// A server that accepts one TLS client, sends a greeting, then echoes until the client closes.
    private func echoServer(_ listener: Socket, _ context: TLSContext) async throws {
        let socket = try await listener.accept()
        let stream = try await TLSStream.accept(socket: socket, context: context, deadline: soon())
        defer { stream.close() }
        try await stream.writeAll(Array("hello from s2cs".utf8), deadline: soon())
        while true {
            let bytes = try await stream.read(max: 64 * 1024, deadline: soon())
            if bytes.isEmpty { return }  // close_notify
            try await stream.writeAll(bytes, deadline: soon())
        }
    }

    private func clientEcho(_ stream: TLSStream) async throws {
        let greeting = try await readExactly(15, from: stream)
        #expect(String(decoding: greeting, as: UTF8.self) == "hello from s2cs")

        let frame: [UInt8] = [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef]
        try await stream.writeAll(frame, deadline: soon())
        #expect(try await readExactly(frame.count, from: stream) == frame)

        // Bigger than one TLS record, piece by piece: both directions many records deep.
        var random = SystemRandomNumberGenerator()
        for size in [16 * 1024, 16 * 1024 + 1, 100_000] {
            let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) }
            try await stream.writeAll(payload, deadline: soon())
            #expect(try await readExactly(size, from: stream) == payload)
        }
    }

    @Test func handshakeAndEchoVerifyingTheIPAddress() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let served: Void = echoServer(listener, server)
        let stream = try await TLSStream.connect(socket: try await connectPlain(port: port), context: client,
                                                 serverName: "127.0.0.1", deadline: soon())
        #expect(stream.protocolVersion == "TLSv1.3")
        #expect(stream.peer == "127.0.0.1:\(port)")
        try await clientEcho(stream)
        stream.close()
        stream.close()  // idempotent
        try await served  // the server saw a clean close
    }

    @Test func handshakeVerifyingTheHostName() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let served: Void = echoServer(listener, server)
        let stream = try await TLSStream.connect(socket: try await connectPlain(port: port), context: client,
                                                 serverName: "localhost", deadline: soon())
        #expect(stream.peer == "localhost:\(port)")
        try await clientEcho(stream)
        stream.close()
        try await served
    }

    @Test func handshakeOverIPv6VerifyingTheBracketedAddress() async throws {
        guard let (listener, port) = try? makeListener(host: "::1") else { return }  // no IPv6 loopback here
        defer { listener.close() }
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)

        async let served: Void = echoServer(listener, server)
        let stream = try await TLSStream.connect(socket: try await connectPlain(port: port, host: "::1"),
                                                 context: client, serverName: "[::1]", deadline: soon())
        try await clientEcho(stream)
        stream.close()
        try await served
    }

    @Test func certificateForAnotherAddressFailsNamingTheExpectedOne() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.otherAddress.certificate,
                                           keyPath: certificates.otherAddress.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.otherAddress.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let serverError = acceptExpectingFailure(listener, server)
        let socket = try await connectPlain(port: port)
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1", deadline: soon())
        }
        guard case .verificationFailed(let reason)? = error?.kind else {
            Issue.record("expected verificationFailed, got \(String(describing: error))")
            return
        }
        #expect(reason.hasPrefix("certificate is for 10.9.9.9, not 127.0.0.1"))
        #expect(error?.description.contains("127.0.0.1") == true)
        #expect(error?.verifyResult != nil)
        #expect(error?.openSSLErrors.isEmpty == false)
        let onServer = await serverError
        guard case .handshakeFailed? = onServer?.kind else {
            Issue.record("the server should see a failed handshake, got \(String(describing: onServer))")
            return
        }
    }

    @Test func hostNameNotInTheCertificateFails() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.otherAddress.certificate,
                                           keyPath: certificates.otherAddress.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.otherAddress.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let serverError = acceptExpectingFailure(listener, server)
        let socket = try await connectPlain(port: port)
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.connect(socket: socket, context: client, serverName: "localhost", deadline: soon())
        }
        guard case .verificationFailed(let reason)? = error?.kind else {
            Issue.record("expected verificationFailed, got \(String(describing: error))")
            return
        }
        #expect(reason.hasPrefix("certificate is for 10.9.9.9, not localhost"))
        _ = await serverError
    }

    @Test func clientTrustingAnotherCertificateFails() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.stranger.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let serverError = acceptExpectingFailure(listener, server)
        let socket = try await connectPlain(port: port)
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1", deadline: soon())
        }
        guard case .verificationFailed? = error?.kind else {
            Issue.record("expected verificationFailed, got \(String(describing: error))")
            return
        }
        #expect(error?.verifyResult != nil)
        #expect(error?.untrustedCertificate == true)
        #expect(error?.description.contains("--server") == false)
        #expect(error.map(ErrorWording.tls)?.contains("--server_cert") == true)
        let onServer = await serverError
        #expect(onServer?.description.contains("rejected this server's certificate") == true)
        #expect(onServer?.peerRejectedCertificate == true)
        #expect(onServer.map(ErrorWording.tls)?.contains("does s2uc --server_cert name it?") == true)
    }

    @Test func plaintextServerGivesPeerIsPlaintext() async throws {
        let certificates = try Certificates.get()
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        // A plaintext s2cs: reads the request (a ClientHello here), answers an error frame, closes.
        async let served: Void = {
            let socket = try await listener.accept()
            defer { socket.close() }
            _ = try await socket.read(max: 4096, deadline: soon())
            try await socket.writeAll([0x00, 0x00, 0x00, 0x06, 0x01, 0xff, 0x00, 0x02, 0x6e, 0x6f], deadline: soon())
        }()
        let socket = try await connectPlain(port: port)
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1", deadline: soon())
        }
        #expect(error?.kind == .peerIsPlaintext)
        #expect(error.map(ErrorWording.tls)?.contains("--ssl False") == true)
        try await served
    }

    @Test func plaintextServerThatClosesAtOnceGivesPeerIsPlaintext() async throws {
        let certificates = try Certificates.get()
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        // Writes before reading anything, then shuts down its side: an HTTP server, say.
        async let served: Void = {
            let socket = try await listener.accept()
            defer { socket.close() }
            try await socket.writeAll(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8), deadline: soon())
            _ = Glibc.shutdown(socket.fd, Int32(SHUT_WR))
            _ = try await socket.read(max: 4096, deadline: soon())
        }()
        let socket = try await connectPlain(port: port)
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1", deadline: soon())
        }
        #expect(error?.kind == .peerIsPlaintext)
        socket.close()
        try await served
    }

    @Test func acceptOnAPlaintextClientLeavesItsBytesUnread() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        let request: [UInt8] = [0x00, 0x00, 0x00, 0x0a, 0x01, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68]
        async let clientSaw: [UInt8] = {
            let socket = try await connectPlain(port: port)
            defer { socket.close() }
            try await socket.writeAll(request, deadline: soon())
            return try await readExactly(6, from: socket)
        }()

        let socket = try await listener.accept()
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.accept(socket: socket, context: server, deadline: soon())
        }
        #expect(error?.kind == .peerIsPlaintext)
        #expect(error?.side == .server)
        #expect(error.map(ErrorWording.tls)?.contains("--ssl False") == true)
        // Nothing was consumed: the whole request is still there, and the socket still works.
        #expect(try await readExactly(request.count, from: socket) == request)
        try await socket.writeAll([0x00, 0x00, 0x00, 0x02, 0x01, 0xff], deadline: soon())
        #expect(try await clientSaw == [0x00, 0x00, 0x00, 0x02, 0x01, 0xff])
    }

    @Test func silentClientHitsTheAcceptDeadline() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        let client = try await connectPlain(port: port)
        defer { client.close() }
        let socket = try await listener.accept()
        defer { socket.close() }
        let started = ContinuousClock.now
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.accept(socket: socket, context: server, deadline: .now + .milliseconds(300))
        }
        let elapsed = ContinuousClock.now - started
        #expect(error?.kind == .timedOut)
        #expect(error?.description.hasPrefix("timed out waiting for the client 127.0.0.1:") == true)
        #expect(elapsed >= .milliseconds(250))
        #expect(elapsed < .seconds(5))
    }

    @Test func clientThatStallsMidHandshakeHitsTheDeadline() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        let client = try await connectPlain(port: port)
        defer { client.close() }
        try await client.writeAll([0x16, 0x03, 0x01, 0x02, 0x00, 0x01], deadline: soon())  // a ClientHello's start
        let socket = try await listener.accept()
        defer { socket.close() }
        let started = ContinuousClock.now
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.accept(socket: socket, context: server, deadline: .now + .milliseconds(300))
        }
        #expect(error?.kind == .timedOut)
        #expect(error?.description.contains("during the TLS handshake") == true)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func cancellingAnAcceptEndsItPromptly() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        let client = try await connectPlain(port: port)
        defer { client.close() }
        let socket = try await listener.accept()
        defer { socket.close() }
        let accepting = Task {
            try await TLSStream.accept(socket: socket, context: server, deadline: nil)
        }
        // Cancelled whether or not the accept waits yet: a wait cancelled before it begins ends at once.
        accepting.cancel()
        let result = await accepting.result
        guard case .failure(let error) = result else {
            Issue.record("accept should have been cancelled")
            return
        }
        #expect((error as? TLSError)?.kind == .cancelled)
    }

    @Test func clientThatClosesBeforeSpeakingIsClosed() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        let client = try await connectPlain(port: port)
        client.close()
        let socket = try await listener.accept()
        defer { socket.close() }
        let error = await #expect(throws: TLSError.self) {
            try await TLSStream.accept(socket: socket, context: server, deadline: soon())
        }
        #expect(error?.kind == .closed)
    }

    @Test func fiftyConcurrentHandshakesOnOneListener() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }
        let count = 50

        async let served: Int = withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<count {
                let socket = try await listener.accept()
                group.addTask {
                    let stream = try await TLSStream.accept(socket: socket, context: server, deadline: soon(30))
                    defer { stream.close() }
                    let request = try await readExactly(8, from: stream)
                    try await stream.writeAll(request.reversed(), deadline: soon(30))
                    return try await stream.read(max: 16, deadline: soon(30)).isEmpty
                }
            }
            var cleanCloses = 0
            for try await clean in group where clean { cleanCloses += 1 }
            return cleanCloses
        }

        let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<count {
                group.addTask {
                    let socket = try await connectPlain(port: port)
                    let stream = try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1",
                                                             deadline: soon(30))
                    defer { stream.close() }
                    let request = withUnsafeBytes(of: UInt64(index).bigEndian) { Array($0) }
                    try await stream.writeAll(request, deadline: soon(30))
                    return try await readExactly(8, from: stream) == request.reversed()
                }
            }
            var answered = 0
            for try await ok in group where ok { answered += 1 }
            return answered
        }
        #expect(answered == count)
        #expect(try await served == count)
    }

    @Test func readAfterThePeerClosedReturnsEmpty() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let served: Void = {
            let socket = try await listener.accept()
            let stream = try await TLSStream.accept(socket: socket, context: server, deadline: soon())
            try await stream.writeAll([1, 2, 3], deadline: soon())
            stream.close()
        }()
        let stream = try await TLSStream.connect(socket: try await connectPlain(port: port), context: client,
                                                 serverName: "127.0.0.1", deadline: soon())
        defer { stream.close() }
        try await served
        #expect(try await readExactly(3, from: stream) == [1, 2, 3])
        #expect(try await stream.read(max: 100, deadline: soon()) == [])
        #expect(try await stream.read(max: 100, deadline: soon()) == [])
    }

    @Test func readOnAClosedStreamIsClosed() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                           keyPath: certificates.loopback.key)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        let (listener, port) = try makeListener()
        defer { listener.close() }

        async let served: Void = echoServer(listener, server)
        let stream = try await TLSStream.connect(socket: try await connectPlain(port: port), context: client,
                                                 serverName: "127.0.0.1", deadline: soon())
        stream.close()
        let error = await #expect(throws: StreamError.self) {
            try await stream.writeAll([1], deadline: soon())
        }
        #expect(error?.kind == .closed)
        #expect((error?.cause as? TLSError)?.kind == .closed)
        try? await served
    }

    /// Accepts one connection and returns the TLS error its handshake failed with (nil if none).
    private func acceptExpectingFailure(_ listener: Socket, _ context: TLSContext) async -> TLSError? {
        guard let socket = try? await listener.accept() else { return nil }
        defer { socket.close() }
        do {
            let stream = try await TLSStream.accept(socket: socket, context: context, deadline: soon())
            stream.close()
            return nil
        } catch {
            return error
        }
    }
}
