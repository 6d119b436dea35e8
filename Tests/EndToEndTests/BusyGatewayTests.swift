import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamSystem
import SciStreamClient

/// A proxy that is slow to start must not hold up anyone else: while one session's HAProxy takes two
/// seconds to listen, `list` and another session's request and hello on the same s2cs are answered
/// at once.
@Suite(.serialized) struct BusyGatewayTests {
    /// A folder s2cs accepts proxies from (root-owned, not writable by others, up to `/`) holding
    /// `haproxy`: a wrapper that waits two seconds, then runs the real one.
    static func slowHAProxyFolder() throws -> URL {
        // s2cs takes a proxy only from a folder that root owns and nobody else can write, up to `/`:
        // /run is such a folder (a clone under /tmp is not).
        let bin = URL(fileURLWithPath: "/run/scistream-slow-proxy-\(getpid())")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        chmod(bin.path, 0o755)
        let script = bin.appendingPathComponent("haproxy")
        try "#!/bin/sh\nsleep 2\nexec /usr/sbin/haproxy \"$@\"\n".write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        return bin
    }

    @Test func aSlowProxyStartHoldsUpNoOtherRequest() async throws {
        let bin = try Self.slowHAProxyFolder()
        defer { try? FileManager.default.removeItem(at: bin) }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = bin.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let daemon = try await Daemon(type: "Haproxy", environment: environment)
        defer { daemon.stop() }

        // One setup whose proxy takes two seconds to listen.
        let slowStart = ContinuousClock.now
        let slow = Task { await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "1"]) }
        // Wait until that session is starting (its update is under way), then time the others.
        let deadline = ContinuousClock.now + .seconds(20)
        var starting = false
        while !starting && ContinuousClock.now < deadline {
            let list = try await ControlConnection.open(daemon.target).list(ListSessions(token: "INVALID_TOKEN"))
            starting = list.sessions.contains { $0.state == "starting" }
            if !starting { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(starting, "the slow session never showed as starting")

        var listTimes: [Duration] = []
        for _ in 0..<5 {
            let before = ContinuousClock.now
            let list = try await ControlConnection.open(daemon.target).list(ListSessions(token: "INVALID_TOKEN"))
            listTimes.append(ContinuousClock.now - before)
            #expect(list.status.code == .ok)
        }
        // Another session's request and hello (it needs no proxy until its update).
        let before = ContinuousClock.now
        let uid = SessionID.random()
        let connection = try await ControlConnection.open(daemon.target)
        let pending = Task { try await connection.request(Request(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, numConn: 1, rate: 0, listenPorts: []), timeout: .seconds(10)) }
        let hello = try await ControlConnection.open(daemon.target).hello(Hello(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, prodListeners: ["127.0.0.1:5001"]))
        let request = try await pending.value
        let otherSession = ContinuousClock.now - before
        #expect(hello.code == .ok && request.status.code == .ok)

        let stillStarting = try await ControlConnection.open(daemon.target).list(ListSessions(token: "INVALID_TOKEN")).sessions.contains { $0.state == "starting" }
        #expect(stillStarting, "the slow proxy was already up: this test measured nothing")
        // Answered while the slow start went on, in well under its two seconds (tens of
        // milliseconds on a quiet machine; bench/run measures it).
        let slowest = listTimes.max() ?? .zero
        #expect(slowest < .milliseconds(700), "list took \(listTimes) while a proxy started")
        #expect(otherSession < .milliseconds(700), "another session's request and hello took \(otherSession)")

        let output = await slow.value
        #expect(output.status == 0, "\(output.stderr)")
        #expect(ContinuousClock.now - slowStart >= .seconds(2), "the wrapper did not hold the start")
        print("list while a proxy starts: \(listTimes); another session's request+hello: \(otherSession)")
    }
}
