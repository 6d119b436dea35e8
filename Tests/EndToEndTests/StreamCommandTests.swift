import Foundation
import Testing
import SciStreamWire
import SciStreamServer
import SciStreamSystem

/// `s2uc stream_request` and `stream_release`: both halves with one command, against two real s2cs.
@Suite(.serialized) struct StreamCommandTests {
    static let progress = ControlPlaneTests.progress

    /// The arguments naming both daemons (TLS, the development certificate given per side).
    static func sides(_ producer: Daemon, _ consumer: Daemon) -> [String] {
        ["--prod_s2cs", producer.address, "--cons-s2cs", consumer.address,
         "--prod_server_cert", Harness.certificates.crt, "--cons_server_cert", Harness.certificates.crt]
    }

    static func sessionCount(_ daemon: Daemon) async throws -> Int {
        let list = await Harness.s2uc(["list", "--json"] + daemon.clientArguments)
        let json = try JSONOutputTests.object(list)
        return (json["sessions"] as? [Any])?.count ?? -1
    }

    @Test func oneCommandSetsUpAWholeHAProxyTunnelAndOneReleasesIt() async throws {
        let producer = try await Daemon(type: "Haproxy")
        let consumer = try await Daemon(type: "Haproxy")
        defer { producer.stop(); consumer.stop() }
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }

        let output = await Harness.s2uc(["stream_request"] + Self.sides(producer, consumer)
                                        + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--cons_receiver_ports", "\(consumer.ports[5])", "--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)\n\(producer.log)\n\(consumer.log)")
        let lines = output.lines
        try #require(lines.count == 15, "\(lines)")
        let uid = String(lines[1].prefix(36))
        #expect(try SessionID.validate(uid) == uid)
        // The inbound half's lines, then the outbound half's, as the two commands print them.
        #expect(lines[0] == "uid; s2cs; access_token; role" && lines[7] == lines[0])
        #expect(lines[1] == "\(uid) \(producer.address) INVALID_TOKEN PROD")
        #expect(lines[8] == "\(uid) \(consumer.address) INVALID_TOKEN CONS")
        #expect(Array(lines[2...5]) == Self.progress && Array(lines[9...12]) == Self.progress)
        #expect(lines[6].hasPrefix("Listeners: ['127.0.0.1:\(producer.ports.lower)") && lines[6].hasSuffix("']"), "\(lines[6])")
        #expect(lines[13] == "Listeners: ['127.0.0.1:\(consumer.ports[5])']")
        #expect(lines[14] == "Consumer listeners: ['127.0.0.1:\(consumer.ports[5])']")

        // Bytes through the tunnel arrive intact.
        let sent = try await sendRandomBytes(to: consumer.ports[5], count: 4 << 20)
        let received = await app.results()
        #expect(received.first?.bytes == 4 << 20 && received.first?.sha256 == sent)

        let pids = [producer, consumer].compactMap { daemon in
            (try? String(contentsOfFile: daemon.configFolder.appendingPathComponent("\(uid).pid").path, encoding: .utf8))
                .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        #expect(pids.count == 2)

        let release = await Harness.s2uc(["stream_release", uid] + Self.sides(producer, consumer))
        #expect(release.status == 0, "\(release.stderr)")
        #expect(release.lines == ["Release completed: CONS at s2cs \(consumer.address)", "Release completed: PROD at s2cs \(producer.address)"])
        for pid in pids { #expect(!processExists(pid), "proxy \(pid) still running") }
        let counts = (try await Self.sessionCount(producer), try await Self.sessionCount(consumer))
        #expect(counts == (0, 0))
    }

    @Test func whenTheSecondHalfFailsTheFirstIsReleased() async throws {
        let producer = try await Daemon()
        let consumer = try await Daemon()
        defer { producer.stop(); consumer.stop() }
        // The consumer side is asked to listen on a port of its range that another program holds.
        let squatter = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: consumer.ports.upper))
        defer { squatter.close() }
        let arguments = ["stream_request"] + Self.sides(producer, consumer) + ["--num_conn", "1", "--cons_receiver_ports", "\(consumer.ports.upper)"]
        let output = await Harness.s2uc(arguments)
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("Error: request failed at s2cs \(consumer.address): RESOURCE_EXHAUSTED: port \(consumer.ports.upper) on 127.0.0.1 is already in use"), "\(output.stderr)")
        #expect(output.stderr.hasSuffix("; the producer-side half at s2cs \(producer.address) was released (a stream needs both halves)\n"), "\(output.stderr)")
        // The first half's lines were printed; then nothing more on stdout.
        #expect(output.lines.count == 7 + 5 && output.lines[6].hasPrefix("Listeners: ['127.0.0.1:\(producer.ports.lower)"), "\(output.lines)")
        let counts = (try await Self.sessionCount(producer), try await Self.sessionCount(consumer))
        #expect(counts == (0, 0))

        let json = try JSONOutputTests.object(await Harness.s2uc(arguments + ["--json"]))
        _ = JSONOutputTests.expectFailure(json, code: "RESOURCE_EXHAUSTED", step: "request")
        #expect(json["prod_released"] as? Bool == true)
        let prod = try #require(json["prod"] as? [String: Any])
        let cons = try #require(json["cons"] as? [String: Any])
        #expect(prod["ok"] as? Bool == true && (prod["listeners"] as? [String])?.count == 1, "\(prod)")
        #expect(cons["ok"] as? Bool == false && (cons["error"] as? [String: Any])?["code"] as? String == "RESOURCE_EXHAUSTED", "\(cons)")
        #expect(try await Self.sessionCount(producer) == 0)
    }

    @Test func jsonHasBothHalvesAndStreamReleaseReportsAMissingHalf() async throws {
        let producer = try await Daemon()
        let consumer = try await Daemon()
        defer { producer.stop(); consumer.stop() }
        let output = await Harness.s2uc(["stream-request", "--json"] + Self.sides(producer, consumer) + ["--num_conn", "2", "--receiver_ports", "5001", "--remote_ip", "127.0.0.1"])
        #expect(output.status == 0, "\(output.stderr)")
        let json = try JSONOutputTests.object(output)
        let uid = try #require(json["uid"] as? String)
        let prod = try #require(json["prod"] as? [String: Any])
        let cons = try #require(json["cons"] as? [String: Any])
        #expect(prod["s2cs"] as? String == producer.address && prod["role"] as? String == "PROD" && prod["targets"] as? [String] == ["127.0.0.1:5001"])
        let prodListeners = try #require(prod["listeners"] as? [String])
        #expect(cons["s2cs"] as? String == consumer.address && cons["role"] as? String == "CONS" && cons["targets"] as? [String] == prodListeners)
        #expect(json["listeners"] as? [String] == cons["listeners"] as? [String] && (json["listeners"] as? [String])?.count == 2)

        // The consumer half released by hand: stream_release still releases the producer half, and says what was missing.
        #expect(await Harness.s2uc(["release", uid] + consumer.clientArguments).status == 0)
        let release = await Harness.s2uc(["stream_release", uid, "--json"] + Self.sides(producer, consumer))
        #expect(release.status == 1)
        #expect(release.stderr.hasPrefix("Error: release failed at s2cs \(consumer.address): NOT_FOUND") && release.stderr.hasSuffix("(the other half was released)\n"), "\(release.stderr)")
        let released = try JSONOutputTests.object(release)
        _ = JSONOutputTests.expectFailure(released, code: "NOT_FOUND", step: "release")
        #expect((released["cons"] as? [String: Any])?["ok"] as? Bool == false && (released["prod"] as? [String: Any])?["ok"] as? Bool == true, "\(released)")
        #expect(try await Self.sessionCount(producer) == 0)
    }

    @Test func badCommandLinesChangeNothing() async throws {
        let producer = try await Daemon()
        let consumer = try await Daemon()
        defer { producer.stop(); consumer.stop() }
        let cases: [([String], Int32, String)] = [
            (["stream_request", "--prod_s2cs", producer.address], 64, "Error: missing --cons_s2cs: give the consumer-side s2cs as host:port"),
            (["stream_request", "--prod_s2cs", producer.address, "--cons_s2cs", producer.address], 64,
             "Error: --prod_s2cs and --cons_s2cs are both \(producer.address): the two halves of a session run on two gateways' s2cs"),
            (["stream_request", "--prod_s2cs", "127.0.0.1:99999", "--cons_s2cs", consumer.address], 64, "Error: bad --prod_s2cs '127.0.0.1:99999': "),
            (["stream_request", "--cons_receiver_ports", "5a", "--prod_s2cs", producer.address, "--cons_s2cs", consumer.address], 64, "Error: bad --cons_receiver_ports: "),
            (Array(["stream_request"] + Self.sides(producer, consumer).dropLast()) + ["/nonexistent.crt"], 1,
             "Error: the s2cs certificate '/nonexistent.crt' does not exist: pass the certificate of \(consumer.address) with --cons_server_cert"),
            (["stream_release", "--prod_s2cs", producer.address, "--cons_s2cs", consumer.address], 64, "Error: missing the uid of the stream to release"),
        ]
        for (arguments, status, message) in cases {
            let output = await Harness.s2uc(arguments)
            #expect(output.status == status, "\(arguments): \(output)")
            #expect(output.stderr.hasPrefix(message), "\(arguments): \(output.stderr)")
            #expect(output.stdout.isEmpty)
        }
        let counts = (try await Self.sessionCount(producer), try await Self.sessionCount(consumer))
        #expect(counts == (0, 0))
    }
}
