import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
@testable import SciStreamCommandLine
@testable import SciStreamServer

/// `s2cs --max-session-lifetime`: a session that old (since its request) is ended as a release ends
/// it. Real s2cs, HAProxy and s2uc.
@Suite(.serialized) struct SessionLifetimeTests {
    /// The `age=` of the log line that ended the session `prefix`, in seconds.
    static func endedAge(_ log: String, _ prefix: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("session reached --max-session-lifetime") && $0.contains("session=\(prefix)") }),
              let field = line.split(separator: " ").first(where: { $0.hasPrefix("age=") }) else { return nil }
        return Int(field.dropFirst("age=".count).dropLast())
    }

    @Test func aSessionPastTheLifetimeIsEndedAsAReleaseWouldEndIt() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Haproxy", extra: ["--max-session-lifetime", "5s"])
        let tunnel = try await TunnelTests.setUp(type: "Haproxy", appPort: app.port, consumerPort: try TunnelTests.freePort(), producer: producer)
        defer { tunnel.consumer.stop() }
        let proxy = try #require(tunnel.proxyPID(producer), "the proxy's pid file")
        let prefix = String(tunnel.uid.prefix(8))
        let port = try #require(tunnel.producerListeners.first.flatMap { $0.split(separator: ":").last }.flatMap { UInt16($0) }, "\(tunnel.producerListeners)")

        try await waitUntil("the session is ended", seconds: 30) { Self.endedAge(producer.log, prefix) != nil }
        try await waitUntil("its proxy is stopped") { !processExists(proxy) }
        #expect(try #require(Self.endedAge(producer.log, prefix)) >= 5, "\(producer.log)")
        let listed = await Harness.s2uc(["list"] + producer.clientArguments)
        #expect(listed.status == 0 && !listed.stdout.contains(prefix), "\(listed.stdout)\(listed.stderr)")
        #expect(tunnel.sessionFiles(producer).isEmpty, "its files and record are removed: \(tunnel.sessionFiles(producer))")
        #expect(Socket.canBind(host: "127.0.0.1", port: port), "its port \(port) is free")
        let audit = try AuditLogTests.entries(producer.configFolder.appendingPathComponent("audit.log").path)
        let expired = try #require(audit.first { $0["event"] as? String == "expired" }, "\(audit)")
        #expect(expired["session"] as? String == prefix && expired["role"] as? String == "PROD", "\(expired)")
        #expect((expired["reason"] as? String)?.hasPrefix("max session lifetime") == true, "\(expired)")
        // The consumer side (no limit) still holds its half.
        let consumerList = await Harness.s2uc(["list"] + tunnel.consumer.clientArguments)
        #expect(consumerList.stdout.contains(prefix), "\(consumerList.stdout)")
        _ = await Harness.s2uc(["release", tunnel.uid] + tunnel.consumer.clientArguments)
    }

    /// A session taken over after a restart keeps its age: its record says when it was requested.
    @Test func aSessionTakenOverKeepsItsAge() async throws {
        let (work, sessions, ports, first) = try await RestartTests.keepingDaemon("lifetime-restart")
        defer { try? FileManager.default.removeItem(at: work) }
        let requested = ContinuousClock.now
        let session = try await driveSession(first.target, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok)
        let record = try #require(sessionFolderEntries(sessions).first { $0.hasSuffix(".session") }, "\(sessionFolderEntries(sessions))")
        let prefix = String(record.prefix(8))
        let pidText = try String(contentsOf: sessions.appendingPathComponent(String(record.prefix(36)) + ".pid"), encoding: .utf8)
        let proxy = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(first.pid, SIGTERM)
        first.process.waitUntilExit()
        // The session is now older than the next s2cs's lifetime (2 s) by at least 2 s.
        try await waitUntil("the session is 4 s old") { ContinuousClock.now - requested >= .seconds(4) }

        let second = try await Daemon(type: "Haproxy", ports: ports, extra: ["--keep-sessions-on-exit", "--max-session-lifetime", "2"], sessionFolder: sessions)
        defer { kill(second.pid, SIGQUIT); second.stop() }
        try await waitUntil("the session taken over is ended") { Self.endedAge(second.log, prefix) != nil }
        #expect(second.log.contains("session taken over"), "\(second.log)")
        #expect(try #require(Self.endedAge(second.log, prefix)) >= 4, "it was ended by its age since its request, not since the restart: \(second.log)")
        try await waitUntil("its files and record are removed") { sessionFolderEntries(sessions).filter { !$0.hasSuffix(".log") }.isEmpty }
        try await waitUntil("its proxy is stopped") { !processExists(proxy) }
    }

    @Test func durationsAreSecondsOrCarryTheirUnit() throws {
        for (text, seconds) in [("36h", 129_600), ("90m", 5400), ("3600s", 3600), ("3600", 3600), ("2d", 172_800)] {
            #expect(try ArgumentParser.parseDuration(text, option: "max-session-lifetime") == .seconds(seconds), "\(text)")
        }
        #expect(try ArgumentParser.parseDuration("1.5h", option: "max-session-lifetime") == .seconds(5400))
        let (config, _) = try ServerConfiguration.parse([], environment: [:])
        #expect(config.maxSessionLifetime == nil)
    }

    @Test(arguments: ["0", "5x", "h", "1.2.3s", "1e3", " 5s", ""])
    func aBadValueIsAUsageErrorNamingTheFlag(value: String) async {
        let result = await Harness.run(Harness.s2cs, ["--ssl=False", "--port", "0", "--max-session-lifetime", value])
        #expect(result.status == 64, "\(value): \(result.stderr)")
        #expect(result.stderr.contains("--max-session-lifetime"), "\(value): \(result.stderr)")
    }
}
