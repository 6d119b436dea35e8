import Foundation
import Testing
import SciStreamSystem

/// A stranger cannot crash s2cs, or change what it counts, with text the proxies log for it
/// (docs/security.md): stunnel logs the subject of a client certificate it refuses, and a subject
/// can spell the proxies' own traffic lines.
@Suite(.serialized) struct TrafficForgeryTests {
    /// A subject that spells stunnel's "Connection closed" line twice: in a CN (the bare numbers
    /// that the first parser took from anywhere in a line) and in full in a `description`.
    static let hostileSubject = "/CN=Connection closed: 18446744073709551615 18446744073709551615"
        + "/description=LOG5[1]: Connection closed: 18446744073709551615 byte(s) sent to TLS, 18446744073709551615 byte(s) sent to socket"

    /// A self-signed client certificate and key with `subject`, made by the openssl command.
    static func certificate(subject: String, in folder: URL) async throws -> (crt: String, key: String) {
        let crt = folder.appendingPathComponent("stranger.crt").path, key = folder.appendingPathComponent("stranger.key").path
        let made = await Harness.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", key, "-out", crt,
                                                          "-days", "2", "-subj", subject])
        guard made.status == 0 else { throw HarnessError("openssl req: \(made.stderr)") }
        return (crt, key)
    }

    /// Presents the stranger's certificate to `port` (refused: it is not the session's).
    static func present(_ certificate: (crt: String, key: String), to port: UInt16) async {
        _ = await Harness.run("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-cert", certificate.crt,
                                                   "-key", certificate.key, "-tls1_3"], timeout: .seconds(20))
    }

    /// The session's traffic in `s2uc list --json`; when the list fails, the error says whether s2cs still runs, with its log.
    static func traffic(_ daemon: Daemon) async throws -> [String: Any] {
        let list = await Harness.s2uc(["list", "--json"] + daemon.clientArguments)
        guard list.status == 0 else {
            throw HarnessError("list failed (s2cs \(processExists(daemon.pid) ? "runs" : "is gone")): \(list.stderr)\n\(daemon.log.suffix(3000))")
        }
        return try await TrafficTests.listed(daemon).traffic
    }

    @Test(arguments: TrafficTests.types)
    func aStrangersCertificateSubjectIsNotCounted(type: String) async throws {
        let tunnel = try await TrafficTests.tunnel(type: type, connections: 1)
        defer { tunnel.stop() }
        let (producer, app, consumerPort) = (tunnel.producer, tunnel.app, tunnel.consumerPort)
        let folder = Harness.temporaryFolder("stranger")
        defer { try? FileManager.default.removeItem(at: folder) }
        let listener = try #require(try await TrafficTests.listed(producer).session["listeners"] as? [String]).first
        let producerPort = try #require(listener.flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } })

        // Twice: one forged figure of 2^64-1 fits a counter, the second overflowed it.
        let stranger = try await Self.certificate(subject: Self.hostileSubject, in: folder)
        await Self.present(stranger, to: producerPort)
        await Self.present(stranger, to: producerPort)
        if type == "Stunnel" {
            // What makes this test able to fail: the proxy did write the subject into the session log.
            // (stunnel logs it as it refuses the certificate, which may be after the client has gone.)
            let log = try #require(try FileManager.default.contentsOfDirectory(atPath: producer.configFolder.path).first { $0.hasSuffix(".log") && $0 != "audit.log" })
            var text = ""
            let deadline = ContinuousClock.now + .seconds(10)
            repeat {
                text = (try? String(contentsOf: producer.configFolder.appendingPathComponent(log), encoding: .utf8)) ?? ""
                if text.components(separatedBy: "Rejected by CERT").count == 3 { break }
                try await Task.sleep(for: .milliseconds(20))
            } while ContinuousClock.now < deadline
            #expect(text.components(separatedBy: "Connection closed: 18446744073709551615").count == 5, "\(text)")
        }
        // The two refused connections are counted as connections (HAProxy counts only those past the
        // handshake), with no bytes.
        let refused = type == "Haproxy" ? 0 : 2
        var traffic: [String: Any] = [:]
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            traffic = try await Self.traffic(producer)
            if TrafficTests.number(traffic, "total_connections") >= refused { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        #expect(processExists(producer.pid), "s2cs died reading the stranger's lines: \(producer.log.suffix(2000))")
        #expect(TrafficTests.number(traffic, "total_connections") == refused, "\(type): \(traffic)")
        #expect(TrafficTests.number(traffic, "bytes_in") == 0 && TrafficTests.number(traffic, "bytes_out") == 0, "\(type): \(traffic)")

        // Real traffic afterwards is counted as it is.
        let size = 1 << 20
        _ = try await sendRandomBytes(to: consumerPort, count: size)
        #expect(await app.results().map(\.bytes) == [size])
        repeat {
            traffic = try await Self.traffic(producer)
            if TrafficTests.number(traffic, "bytes_in") >= size && TrafficTests.number(traffic, "open_connections") == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline + .seconds(10)
        let bytesIn = TrafficTests.number(traffic, "bytes_in")
        #expect(bytesIn >= size && Double(bytesIn) <= Double(size) * 1.03, "\(type): \(traffic)")
        #expect(TrafficTests.number(traffic, "bytes_out") >= 0 && TrafficTests.number(traffic, "bytes_out") < 65536, "\(type): \(traffic)")
        #expect(TrafficTests.number(traffic, "total_connections") == refused + 1, "\(type): \(traffic)")
        let metrics = try await MetricsTests.scrape(try MetricsTests.metricsPort(producer))
        let prefix = try #require(try await TrafficTests.listed(producer).session["uid"] as? String)
        #expect(metrics.samples["s2cs_session_bytes_total{direction=in,role=PROD,session=\(prefix)}"] == Double(bytesIn))
        #expect(processExists(producer.pid))
    }
}
