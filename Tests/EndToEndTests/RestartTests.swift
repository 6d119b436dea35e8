import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import TestPorts
import COpenSSL

/// Restart keeps the streams: an s2cs killed with SIGKILL, or stopped with --keep-sessions-on-exit
/// (systemctl restart, an upgrade to a new binary), leaves its proxies running, and the next s2cs on
/// the same session folder takes the sessions over: the stream goes on byte for byte, and list and
/// release work as before. Real s2cs, HAProxy and bytes.
@Suite(.serialized) struct RestartTests {
    /// Sends `count` random bytes to `port` slowly (64 KiB every 10 ms), so that a restart happens
    /// while they cross; returns their digest.
    static func sendSlowly(to port: UInt16, count: Int) async throws -> String {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: port), deadline: .now + .seconds(10))
        defer { socket.close() }
        let digest = Digest()
        var sent = 0
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while sent < count {
            chunk.withUnsafeMutableBytes { _ = RAND_bytes($0.baseAddress, Int32($0.count)) }
            digest.update(chunk)
            try await socket.writeAll(chunk, deadline: .now + .seconds(30))
            sent += chunk.count
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = shutdown(socket.fd, Int32(SHUT_WR))
        return digest.finish()
    }

    /// A work folder (the caller removes it), a session folder and port block of the test's own, and
    /// an s2cs with --keep-sessions-on-exit on them (a restarted one is given the same).
    static func keepingDaemon(_ name: String, type: String = "Haproxy") async throws -> (work: URL, sessions: URL, ports: PortBlock, daemon: Daemon) {
        let work = Harness.temporaryFolder(name)
        let sessions = work.appendingPathComponent("sessions")
        let ports = try PortBlock.reserve()
        let daemon = try await Daemon(type: type, ports: ports, extra: ["--keep-sessions-on-exit"], sessionFolder: sessions)
        return (work, sessions, ports, daemon)
    }

    enum Restart: String, CaseIterable { case sigkill, keepOnExit, upgrade }

    /// Every restart with HAProxy; a SIGTERM restart with Nginx and Stunnel (whose /usr/bin/stunnel
    /// is a link to stunnel4: the takeover compares the resolved executable).
    @Test(arguments: zip([Restart.sigkill, .keepOnExit, .upgrade, .keepOnExit, .keepOnExit], ["Haproxy", "Haproxy", "Haproxy", "Nginx", "Stunnel"]))
    func aStreamGoesOnAcrossARestartOfTheProducerSideS2cs(restart: Restart, type: String) async throws {
        let (work, sessions, ports, first) = try await Self.keepingDaemon("restart", type: type)
        defer { try? FileManager.default.removeItem(at: work) }
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await TunnelTests.setUp(type: type, appPort: app.port, consumerPort: try TunnelTests.freePort(), producer: first)
        defer { tunnel.consumer.stop() }
        let proxy = try #require(tunnel.proxyPID(first))

        let size = 16 << 20
        let sending = Task { try await Self.sendSlowly(to: tunnel.consumerPort, count: size) }
        #expect(await app.awaitBytes(1 << 20), "the stream started")
        switch restart {
        case .sigkill:
            kill(first.pid, SIGKILL)
        case .keepOnExit, .upgrade:
            kill(first.pid, SIGTERM)
        }
        first.process.waitUntilExit()
        #expect(processExists(proxy), "the proxy ended with s2cs")
        // The next s2cs on the same folder and range (for an upgrade: another binary, a copy).
        var executable = Harness.s2cs
        if restart == .upgrade {
            executable = work.appendingPathComponent("s2cs-new").path
            try FileManager.default.copyItem(atPath: Harness.s2cs, toPath: executable)
        }
        let second = try await Daemon(type: type, ports: ports, extra: ["--keep-sessions-on-exit"], sessionFolder: sessions, executable: executable)
        defer { kill(second.pid, SIGQUIT); second.stop() }
        #expect(second.log.contains("session taken over"), "\(second.log)")

        let sent = try await sending.value
        let received = await app.results()
        #expect(received.first?.bytes == size && received.first?.sha256 == sent, "the stream lost or changed bytes across the restart")
        #expect(received.count == 1, "the stream reconnected")

        // The session is the new s2cs's: listed, its traffic read, released (its proxy stopped).
        let listed = await Harness.s2uc(["list"] + second.clientArguments)
        #expect(listed.stdout.contains(String(tunnel.uid.prefix(8))) && listed.stdout.contains("active"), "\(listed.stdout)")
        let released = await Harness.s2uc(["release", tunnel.uid] + second.clientArguments)
        #expect(released.lines == ["Release completed"], "\(released.stdout)\(released.stderr)")
        try await waitUntil("the adopted proxy stops on release") { !processExists(proxy) }
        #expect(sessionFolderEntries(sessions).filter { !$0.hasSuffix(".log") }.isEmpty, "\(sessionFolderEntries(sessions))")
        _ = await Harness.s2uc(["release", tunnel.uid] + tunnel.consumer.clientArguments)
    }

    @Test func aRecordWhoseProxyIsNotTheOneRecordedIsNotTakenOverAndItsProxyIsStopped() async throws {
        let (work, sessions, ports, first) = try await Self.keepingDaemon("restart-forged")
        defer { try? FileManager.default.removeItem(at: work) }
        let session = try await driveSession(first.target, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok)
        let records = sessionFolderEntries(sessions).filter { $0.hasSuffix(".session") }
        let name = try #require(records.first, "\(sessionFolderEntries(sessions))")
        let pidText = try String(contentsOf: sessions.appendingPathComponent(String(name.prefix(36)) + ".pid"), encoding: .utf8)
        let proxy = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(first.pid, SIGKILL)
        first.process.waitUntilExit()
        // The record now names another start time: as if the pid had been reused.
        let path = sessions.appendingPathComponent(name)
        var record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: path)) as? [String: Any])
        var proxyRecord = try #require(record["proxy"] as? [String: Any])
        proxyRecord["startTime"] = ((proxyRecord["startTime"] as? Int) ?? 0) + 1
        record["proxy"] = proxyRecord
        try JSONSerialization.data(withJSONObject: record).write(to: path)

        let second = try await Daemon(type: "Haproxy", ports: ports, extra: ["--keep-sessions-on-exit"], sessionFolder: sessions)
        defer { kill(second.pid, SIGQUIT); second.stop() }
        #expect(second.log.contains("session not taken over"), "\(second.log)")
        try await waitUntil("the stale proxy is stopped") { !processExists(proxy) }
        let listed = await Harness.s2uc(["list"] + second.clientArguments)
        #expect(!listed.stdout.contains(String(name.prefix(8))), "\(listed.stdout)")
    }

    @Test func withoutTheFlagSIGTERMStillEndsEverySessionAndSIGQUITDoesWithIt() async throws {
        for flag in [false, true] {
            let daemon = try await Daemon(type: "Haproxy", extra: flag ? ["--keep-sessions-on-exit"] : [])
            let session = try await driveSession(daemon.target, targets: ["127.0.0.1:5001"])
            #expect(session.update?.code == .ok)
            let proxies = childPIDs(of: daemon.pid)
            #expect(!proxies.isEmpty)
            kill(daemon.pid, flag ? SIGQUIT : SIGTERM)
            daemon.process.waitUntilExit()
            for pid in proxies { #expect(!processExists(pid), "proxy \(pid) outlived s2cs (flag \(flag))") }
            #expect(sessionFolderEntries(daemon.configFolder).filter { $0.hasSuffix(".session") || $0.hasSuffix(".conf") }.isEmpty)
        }
    }
}
