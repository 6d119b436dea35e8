import Testing
import SciStreamSystem
import SciStreamTLS
import SciStreamWire
import SciStreamClient

/// A deadline that passes is `.timedOut` on every stream, TLS or not, and s2uc says the s2cs did
/// not answer in time (not that it lost the connection).
@Suite struct StreamTimeoutTests {
    /// A server that accepts one connection (completing the TLS handshake when `tls` is given) and
    /// then says nothing until `quiet` ends; returns its port.
    static func silentServer(tls: TLSContext?) throws -> (port: UInt16, task: Task<Void, any Error>) {
        let (listener, port) = try makeListener()
        let task = Task {
            defer { listener.close() }
            let socket = try await listener.accept()
            defer { socket.close() }
            var stream: any ByteStream = socket
            if let tls { stream = try await TLSStream.accept(socket: socket, context: tls, deadline: .now + .seconds(10)) }
            defer { stream.close() }
            // Reads until the client gives up and closes: its request is never answered.
            while try await !stream.read(max: 4096, deadline: .now + .seconds(20)).isEmpty {}
        }
        return (port, task)
    }

    @Test(arguments: [false, true]) func aReplyThatDoesNotComeInTimeIsReportedAsATimeout(tls: Bool) async throws {
        let certificates = try Certificates.get()
        let server = tls ? try TLSContext.server(certificatePath: certificates.loopback.certificate, keyPath: certificates.loopback.key) : nil
        let client = tls ? try TLSContext.client(trustAnchorPath: certificates.loopback.certificate) : nil
        let (port, serving) = try Self.silentServer(tls: server)
        do {
            let connection = try await ControlConnection.open(ControlTarget(host: "127.0.0.1", port: port, tls: client))
            _ = try await connection.hello(Hello(token: "", uid: .newRandom(), role: .prod, prodListeners: []), timeout: .milliseconds(300))
            Issue.record("a silent s2cs answered")
        } catch {
            #expect(error.description == "s2cs at 127.0.0.1:\(port) did not answer in time", "\(error)")
        }
        // The connection is closed (deinit): the server's read ends.
        _ = await serving.result
    }

    @Test func aTLSReadPastItsDeadlineThrowsTimedOut() async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate, keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }
        let accepting = Task { try await TLSStream.accept(socket: listener.accept(), context: server, deadline: .now + .seconds(10)) }
        let plain = try await connectPlain(port: port)
        let client = try await TLSStream.connect(socket: plain, context: TLSContext.client(trustAnchorPath: certificates.loopback.certificate),
                                                 serverName: "127.0.0.1", deadline: .now + .seconds(10))
        defer { client.close() }
        let accepted = try await accepting.value
        defer { accepted.close() }
        do {
            _ = try await client.read(max: 16, deadline: .now + .milliseconds(200))
            Issue.record("read returned with nothing sent")
        } catch {
            #expect(error.kind == .timedOut, "\(error)")
            #expect((error.cause as? TLSError)?.kind == .timedOut, "\(error)")
        }
    }
}
