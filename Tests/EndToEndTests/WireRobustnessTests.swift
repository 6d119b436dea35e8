import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamServer

/// Bad bytes on the control port: the server answers an error where it can, closes that connection,
/// and goes on serving everyone else.
@Suite struct WireRobustnessTests {
    /// Sends raw bytes on a fresh plaintext connection and returns everything the server sent before closing.
    static func exchange(_ bytes: [UInt8], port: UInt16, halfClose: Bool = false) async throws -> [UInt8] {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: port), deadline: .now + .seconds(5))
        defer { socket.close() }
        try? await socket.writeAll(bytes, deadline: .now + .seconds(5))
        if halfClose { _ = shutdown(socket.fd, Int32(SHUT_WR)) }
        var received: [UInt8] = []
        while true {
            let chunk: [UInt8]
            do { chunk = try await socket.read(max: 65536, deadline: .now + .seconds(15)) } catch { break }
            if chunk.isEmpty { break }
            received += chunk
        }
        return received
    }

    static func decodeAll(_ bytes: [UInt8]) -> [Message] {
        var decoder = FrameDecoder()
        decoder.append(bytes)
        var messages: [Message] = []
        while let message = try? decoder.nextMessage() { messages.append(message) }
        return messages
    }

    /// Every field a client controls, filled with terminal escapes, a line break that would start a
    /// forged log line, and a bidirectional override: s2cs's log (at --verbose) stays one line per
    /// entry, in its own format, with nothing a terminal acts on. The uid prefix is logged before the
    /// uid is validated, so it is where this showed first.
    @Test func nothingFromTheWireReachesTheLogUnescaped() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let forged = "2026-01-01T00:00:00.000Z error s2cs: forged"
        let hostile = "\u{1B}[2J\n\(forged)\u{07}\u{202E}"
        let listener = "127.0.0.1:80\n\(forged)\u{1B}]0;x\u{07}"
        let token = "\u{1B}[1m\n\(forged)"
        let target = daemon.target
        // Forged frames: s2uc's messages cannot carry a uid that is not one.
        let forgedFrames = frame(.request(Request(token: token, uid: .mock, role: .prod, numConn: 1, rate: 0, listenPorts: [])), forgingUID: hostile)
            + frame(.hello(Hello(token: token, uid: .mock, role: .prod, prodListeners: [listener])), forgingUID: hostile)
            + frame(.update(Update(token: token, uid: .mock, role: .prod, remoteListeners: [listener])), forgingUID: hostile)
        #expect(try await repliesToForgedFrames(forgedFrames, port: daemon.port).count == 3)
        _ = try await callOnce(target, .hello(Hello(token: token, uid: .newRandom(), role: .cons, prodListeners: [listener])))
        _ = try await callOnce(target, .release(Release(token: token, session: .other(hostile))))

        let log = daemon.log
        #expect(log.contains("session='\\u{1B}[2J\\n202'"), "the hostile uid's prefix is logged, escaped: \(log)")
        for character in ["\u{1B}", "\u{07}", "\u{202E}"] {
            #expect(!log.contains(character), "\(character.debugDescription) in the log: \(log.debugDescription)")
        }
        let format = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error) s2cs: /#
        for line in log.split(separator: "\n") {
            #expect(line.prefixMatch(of: format) != nil && !line.hasPrefix(forged), "not a line of s2cs's own: \(line.debugDescription)")
        }
    }

    @Test func hugeLengthPrefixGetsAnErrorAndAClose() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let reply = try await Self.exchange([0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x00], port: daemon.port)
        let messages = Self.decodeAll(reply)
        guard case .error(let status)? = messages.first else { Issue.record("no error frame: \(reply)"); return }
        #expect(status.code == .invalidArgument)
        #expect(status.message.contains("bad frame"))
    }

    @Test func unknownKindAndVersionGetErrors() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        for frame: [UInt8] in [[0, 0, 0, 2, 1, 0x42], [0, 0, 0, 2, 9, 0x01], [0, 0, 0, 3, 1, 0x01, 0x00]] {
            let messages = Self.decodeAll(try await Self.exchange(frame, port: daemon.port))
            guard case .error(let status)? = messages.first else { Issue.record("no error frame for \(frame)"); continue }
            #expect(status.code == .invalidArgument)
        }
    }

    @Test func truncatedFrameThenCloseLeavesTheServerServing() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let full = Message.release(Release(token: "t", uid: .newRandom())).encoded()
        _ = try await Self.exchange(Array(full.prefix(full.count - 3)), port: daemon.port, halfClose: true)
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)")
    }

    @Test func aSilentClientDoesNotBlockOthers() async throws {
        let daemon = try await Daemon(tls: true)
        defer { daemon.stop() }
        // Ten connections that never send a byte (no TLS handshake either).
        var silent: [Socket] = []
        for _ in 0..<10 {
            silent.append(try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5)))
        }
        defer { silent.forEach { $0.close() } }
        let started = ContinuousClock.now
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func thousandsOfRandomFramesThenANormalSession() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        var generator = SystemRandomNumberGenerator()
        let kinds: [UInt8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x85, 0xFF, 0x00, 0x7F]
        // Many random frames per connection, over a few hundred connections, several at once.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for connectionIndex in 0..<200 {
                group.addTask {
                    var rng = SystemRandomNumberGenerator()
                    var bytes: [UInt8] = []
                    for _ in 0..<10 {
                        let bodyLength = Int.random(in: 0..<64, using: &rng)
                        var body = (0..<bodyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
                        if connectionIndex % 3 == 0 {
                            // Fully random bytes, length prefix included.
                            bytes += (0..<Int.random(in: 1..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                            continue
                        }
                        body.insert(kinds.randomElement(using: &rng) ?? 1, at: 0)
                        body.insert(1, at: 0)
                        let length = UInt32(body.count)
                        bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + body
                    }
                    _ = try await Self.exchange(bytes, port: daemon.port, halfClose: true)
                }
                if connectionIndex % 8 == 7 { try await group.next() }
            }
            try await group.waitForAll()
        }
        _ = generator.next()
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)")
        // The daemon is still the same process.
        #expect(daemon.process.isRunning)
    }

    @Test func aReplyKindSentAsARequestIsRefused() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let reply = try await Self.exchange(Message.helloReply(.ok).encoded(), port: daemon.port, halfClose: true)
        guard case .error(let status)? = Self.decodeAll(reply).first else { Issue.record("no error: \(reply)"); return }
        #expect(status.code == .invalidArgument)
    }
}
