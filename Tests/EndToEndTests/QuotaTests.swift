import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
@testable import SciStreamPolicy
@testable import SciStreamServer

/// Per-client quotas count an IPv6 client by its /64, and requests waiting for their hello hold at
/// most --max-pending-ports together.
@Suite struct QuotaTests {
    @Test func anIPv6ClientCountsByItsSlash64AnIPv4ClientByItsAddress() {
        #expect(IPAddress.clientKey("2001:db8:1:2::1") == "2001:db8:1:2::/64")
        #expect(IPAddress.clientKey("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64")
        #expect(IPAddress.clientKey("2001:db8:1:3::1") == "2001:db8:1:3::/64")
        #expect(IPAddress.clientKey("::1") == "::/64")
        #expect(IPAddress.clientKey("fe80::1") == "fe80::/64")
        #expect(IPAddress.clientKey("192.0.2.7") == "192.0.2.7")
        #expect(IPAddress.clientKey("192.0.2.8") == "192.0.2.8")
        #expect(IPAddress.clientKey("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(IPAddress.clientKey("unknown") == "unknown")
    }

    /// A request sent from `host` on a connection of its own, left waiting for its hello.
    static func pendingRequest(_ daemon: Daemon, from host: String, numConn: UInt32 = 1) async throws -> Socket {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port),
                                              from: SocketAddress.resolve(host: host, port: 0), deadline: .now + .seconds(5))
        let request = Request(token: "INVALID_TOKEN", uid: .newRandom(), role: .prod, numConn: numConn, rate: 0, listenPorts: [])
        try await socket.writeAll(Message.request(request).encoded(), deadline: .now + .seconds(5))
        return socket
    }

    /// The reply a connection gets next.
    static func reply(_ socket: Socket, within timeout: Duration = .seconds(10)) async throws -> Message? {
        var decoder = FrameDecoder()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let message = try decoder.nextMessage() { return message }
            let bytes = try await socket.read(max: 65536, deadline: deadline)
            if bytes.isEmpty { return nil }
            decoder.append(bytes)
        }
        return nil
    }

    /// Waits (at most 10 s) until the daemon lists `count` pending sessions; returns how many it lists.
    static func pendingSessions(_ daemon: Daemon, reaching count: Int) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            guard case .listReply(let list) = try await callOnce(daemon.target, .list(ListSessions(token: "INVALID_TOKEN"))) else { return 0 }
            let pending = list.sessions.filter { $0.state == "pending" }.count
            if pending >= count || ContinuousClock.now >= deadline { return pending }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// End to end over IPv4: two addresses have a quota each, one address its own only.
    @Test func eachIPv4AddressHasItsOwnPortQuota() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(10), extra: ["--max-ports-per-client", "2"])
        defer { daemon.stop() }
        let first = try await Self.pendingRequest(daemon, from: "127.0.0.2", numConn: 2)
        defer { first.close() }
        // The second request is sent once the first is taken: two connections are not ordered.
        #expect(try await Self.pendingSessions(daemon, reaching: 1) == 1)
        let over = try await Self.pendingRequest(daemon, from: "127.0.0.2")
        defer { over.close() }
        guard case .requestReply(let refused)? = try await Self.reply(over) else { Issue.record("no reply"); return }
        #expect(refused.status.code == .resourceExhausted && refused.status.message.contains("client 127.0.0.2 holds 2") && refused.status.message.contains("--max-ports-per-client"), "\(refused.status)")
        let other = try await Self.pendingRequest(daemon, from: "127.0.0.3", numConn: 2)
        defer { other.close() }
        // The other address's request was taken: it waits for its hello.
        #expect(try await Self.pendingSessions(daemon, reaching: 2) == 2)
    }

    /// Requests that never send their hello, from several addresses, hold at most --max-pending-ports;
    /// past it a new request is refused until the oldest is 5 s late, which is then released for it.
    @Test func pendingRequestsHoldAtMostMaxPendingPorts() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(10), extra: ["--max-pending-ports", "2"])
        defer { daemon.stop() }
        let sent = ContinuousClock.now
        let oldest = try await Self.pendingRequest(daemon, from: "127.0.0.2")
        defer { oldest.close() }
        #expect(try await Self.pendingSessions(daemon, reaching: 1) == 1)  // taken first: it is the oldest
        let next = try await Self.pendingRequest(daemon, from: "127.0.0.3")
        defer { next.close() }
        #expect(try await Self.pendingSessions(daemon, reaching: 2) == 2)
        // A third request is refused until the oldest is 5 s late (retried until then).
        var attempts: [(at: Duration, session: WireSession)] = []
        let deadline = ContinuousClock.now + .seconds(20)
        repeat {
            let at = ContinuousClock.now - sent
            attempts.append((at, try await driveSession(daemon.target, targets: ["127.0.0.1:5001"])))
            if attempts.last?.session.request.code != .ok { try await Task.sleep(for: .milliseconds(200)) }
        } while attempts.last?.session.request.code != .ok && ContinuousClock.now < deadline
        let outcomes = attempts.map { "\($0.at): \($0.session.request)" }
        // Every attempt but the last was refused naming the flag; one made before the oldest request
        // could be 5 s late was refused (a loaded machine may only get to try later).
        #expect(attempts.dropLast().allSatisfy { $0.session.request.code == .resourceExhausted && $0.session.request.message.contains("--max-pending-ports 2") }, "\(outcomes)")
        #expect(attempts.first.map { $0.at >= .seconds(4) || $0.session.request.code == .resourceExhausted } == true, "\(outcomes)")
        #expect(attempts.last.map { $0.at >= SessionRegistry.stalePending && $0.session.update?.code == .ok } == true, "\(outcomes)")
        // The oldest pending request was released for it and told so.
        guard case .requestReply(let released)? = try await Self.reply(oldest) else { Issue.record("no reply to the oldest request"); return }
        #expect(released.status.code == .resourceExhausted && released.status.message.contains("--max-pending-ports"), "\(released.status)")
        #expect(daemon.log.contains("pending session released to make room"), "\(daemon.log)")
    }
}
