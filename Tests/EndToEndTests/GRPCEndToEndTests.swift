import Foundation
import Testing
import SciStreamGRPC
import SciStreamWire
import SciStreamSystem
import TestPorts

/// The original SciStream's gRPC clients against a real s2cs: a tunnel set up over gRPC alone, with
/// real HAProxy on both gateways and bytes through, on TLS (ALPN h2) and on plaintext (--ssl=False).
@Suite(.serialized) struct GRPCEndToEndTests {
    static func connect(_ daemon: Daemon, alpn: Bool = true) async throws -> GRPCTestClient {
        try await GRPCTestClient.connect(host: "127.0.0.1", port: daemon.port, trustAnchor: daemon.tls ? Harness.certificates.crt : nil, alpn: alpn)
    }

    static func pid(_ daemon: Daemon, _ uid: String) -> Int32? {
        let path = daemon.configFolder.appendingPathComponent("\(uid).pid").path
        return (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test(arguments: [true, false])
    func aTunnelSetUpOverGRPCCarriesBytesThenReleaseStopsItsProxies(tls: Bool) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Haproxy", tls: tls)
        let consumer = try await Daemon(type: "Haproxy", tls: tls)
        defer { producer.stop(); consumer.stop() }
        let uid = SessionID.random()

        // Inbound, as the original s2uc does it: req and hello in flight together on one connection.
        let inbound = try await Self.connect(producer)
        defer { inbound.close() }
        let req = try await inbound.send("req", ControlProto.Request(uid: uid, role: "PROD", numConn: 2, rate: 10000).encoded)
        let hello = try await inbound.send("hello", ControlProto.Hello(uid: uid, prodListeners: ["127.0.0.1:\(app.port)"], role: "PROD").encoded)
        let answers = try await inbound.wait([req, hello])
        #expect(answers.map(\.status) == [0, 0], "\(answers.map(\.message)) \(producer.log)")
        #expect(answers.map(\.httpStatus) == ["200", "200"])
        let reply = try ControlProto.Response(decoding: Array(try #require(answers[0].body).dropFirst(5)))
        #expect(reply.listeners.count == 2)
        #expect(reply.listeners.allSatisfy { $0.hasPrefix("127.0.0.1:") })
        #expect(reply.prodListeners == ["127.0.0.1:\(app.port)"])
        #expect(try ControlProto.AppResponse(decoding: Array(try #require(answers[1].body).dropFirst(5))).message == "Sending Prod listeners...")
        let update = try await inbound.call("update", ControlProto.UpdateTargets(uid: uid, remoteListeners: reply.prodListeners, role: "PROD").encoded)
        #expect(update.status == 0, "\(update.message)")
        #expect(try ControlProto.Response(decoding: Array(try #require(update.body).dropFirst(5)))
                == ControlProto.Response(listeners: reply.listeners, prodListeners: ["127.0.0.1:\(app.port)", "127.0.0.1:\(app.port)"]))

        // Outbound, with the original s2uc's hello: role PROD, its list the consumer's receivers. The
        // original sends req and hello at once; here the hello goes first, the order that once left
        // it taken for a PROD hello and both calls unanswered.
        let outbound = try await Self.connect(consumer)
        defer { outbound.close() }
        let consHello = try await outbound.send("hello", ControlProto.Hello(uid: uid, prodListeners: ["localhost:5074"], role: "PROD").encoded)
        let consReq = try await outbound.send("req", ControlProto.Request(uid: uid, role: "CONS", numConn: 1, rate: 10000).encoded)
        let consAnswers = try await outbound.wait([consReq, consHello])
        #expect(consAnswers.map(\.status) == [0, 0], "\(consAnswers.map(\.message)) \(consumer.log)")
        let consReply = try ControlProto.Response(decoding: Array(try #require(consAnswers[0].body).dropFirst(5)))
        let consumerListener = try #require(consReply.listeners.first)
        #expect(try ControlProto.AppResponse(decoding: Array(try #require(consAnswers[1].body).dropFirst(5)))
                == ControlProto.AppResponse(message: "Sending listeners...", listeners: [consumerListener]))
        let consUpdate = try await outbound.call("update", ControlProto.UpdateTargets(uid: uid, remoteListeners: [reply.listeners[0]], role: "CONS").encoded)
        #expect(consUpdate.status == 0, "\(consUpdate.message) \(consumer.log)")

        let port = try #require(UInt16(consumerListener.split(separator: ":").last ?? ""))
        let sent = try await sendRandomBytes(to: port, count: 1 << 20)
        let received = await app.results()
        #expect(received.count == 1)
        #expect(received.first?.bytes == 1 << 20)
        #expect(received.first?.sha256 == sent)

        let pids = [Self.pid(producer, uid), Self.pid(consumer, uid)].compactMap { $0 }
        #expect(pids.count == 2)
        for (client, daemon) in [(inbound, producer), (outbound, consumer)] {
            let release = try await client.call("release", ControlProto.Release(uid: uid).encoded)
            #expect(release.status == 0, "\(release.message) \(daemon.log)")
            #expect(release.body == GRPCStatus.framed([]))
        }
        for pid in pids { #expect(!processExists(pid), "proxy \(pid) still running after release") }
        // The same port still speaks SciStream's own protocol.
        let list = await Harness.s2uc(["list"] + producer.clientArguments)
        #expect(list.status == 0, "\(list.stderr)")
    }

    /// Refusals arrive as gRPC statuses in the trailers (grpc-status, grpc-message), as the
    /// original's client reads them; here on TLS without ALPN (told apart by the preface).
    @Test func refusalsAreGRPCStatuses() async throws {
        let daemon = try await Daemon(type: "Mock")
        defer { daemon.stop() }
        let client = try await Self.connect(daemon, alpn: false)
        defer { client.close() }
        // The original s2uc's uids without --mock are version 1 (time and MAC address): refused.
        let uuid1 = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c4"
        let refused = try await client.call("req", ControlProto.Request(uid: uuid1, role: "PROD", numConn: 1, rate: 1).encoded)
        #expect(refused.status == 3)
        #expect(refused.message == "uid 4f8583bc... is not a random (version 4) UUID: the uid is the session's secret, so this s2cs accepts only random ones (s2uc makes them)")
        #expect(refused.body == nil)
        let unknown = try await client.call("release", ControlProto.Release(uid: SessionID.random()).encoded)
        #expect(unknown.status == 5, "\(unknown.message)")
        let role = try await client.call("req", ControlProto.Request(uid: SessionID.random(), role: "prod", numConn: 1, rate: 1).encoded)
        #expect(role.status == 3)
        #expect(role.message == "role 'prod' is neither PROD nor CONS")
        let count = try await client.call("req", ControlProto.Request(uid: SessionID.random(), role: "PROD", numConn: -1, rate: 1).encoded)
        #expect(count.message == "num_conn -1 is out of range: use 1 to 100")
        let method = try await client.call("list", [])
        #expect(method.status == 12)
        let garbage = try await client.call("req", [0x0A, 0x20, 0x41])
        #expect(garbage.status == 3)
        #expect(garbage.message == "bad request message: protobuf field 1 runs past the message")
        // Nothing was set up by any of them.
        let list = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(list.status == 0)
        #expect(!list.stdout.contains("pending"), "\(list.stdout)")
    }

    /// Bad HTTP/2 from a client: GOAWAY and close for that connection only; the server goes on.
    @Test func aBrokenHTTP2ClientIsClosedAndOthersAreServed() async throws {
        let daemon = try await Daemon(type: "Mock", tls: false)
        defer { daemon.stop() }
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5))
        defer { socket.close() }
        // A frame announcing 16 MiB, over the 16 KiB this side allows.
        try await socket.writeAll(http2Preface + HTTP2Frame.settings([]).encoded + [0xFF, 0xFF, 0xFF, 0x00, 0, 0, 0, 0, 1], deadline: .now + .seconds(5))
        var received: [UInt8] = []
        while let chunk = try? await socket.read(max: 65536, deadline: .now + .seconds(10)), !chunk.isEmpty { received += chunk }
        var decoder = HTTP2FrameDecoder()
        decoder.append(received)
        var frames: [HTTP2Frame] = []
        while let frame = try decoder.next() { frames.append(frame) }
        let goAway = try #require(frames.last { $0.kind == .goAway })
        #expect(Array(goAway.payload[4..<8]) == [0, 0, 0, 6], "FRAME_SIZE_ERROR")
        #expect(daemon.log.contains("bad HTTP/2 input: closed"))
        let client = try await Self.connect(daemon)
        defer { client.close() }
        #expect(try await client.call("release", ControlProto.Release(uid: SessionID.random()).encoded).status == 5)
    }
}
