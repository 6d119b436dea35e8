import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import SciStreamServer

/// Traffic in `s2uc list` and `/metrics`, as the proxies count it: a known number of bytes through a
/// real tunnel of each type, counted on both gateways.
@Suite(.serialized) struct TrafficTests {
    static let types = ["Haproxy", "Nginx", "Stunnel"]

    /// The one session of `s2uc list --json` against `daemon`, and its traffic object.
    static func listed(_ daemon: Daemon) async throws -> (session: [String: Any], traffic: [String: Any]) {
        let json = try JSONOutputTests.object(await Harness.s2uc(["list", "--json"] + daemon.clientArguments))
        let sessions = try #require(json["sessions"] as? [[String: Any]])
        let session = try #require(sessions.first)
        #expect(sessions.count == 1)
        return (session, try #require(session["traffic"] as? [String: Any], "\(session)"))
    }

    static func number(_ object: [String: Any], _ key: String) -> Int { (object[key] as? NSNumber)?.intValue ?? -1 }

    /// The traffic `list` shows once it counts at least `bytes` in and no connection open (a proxy
    /// logs a connection when it is done with it), or as it is after 10 s.
    static func closedTraffic(_ daemon: Daemon, atLeast bytes: Int) async throws -> [String: Any] {
        var traffic: [String: Any] = [:]
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            traffic = try await listed(daemon).traffic
            if number(traffic, "bytes_in") >= bytes && number(traffic, "open_connections") == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        return traffic
    }

    /// A producer-side s2cs (with `--metrics`) and a consumer-side one of `type`, a producer
    /// application that takes `connections` connections, and one session between them
    /// (`stream_request --num_conn 1`): the consumer side listens on `consumerPort`.
    struct Tunnel {
        let producer: Daemon
        let consumer: Daemon
        let app: ProducerApp
        var consumerPort: UInt16 { consumer.ports[5] }

        func stop() {
            producer.stop()
            consumer.stop()
            app.stop()
        }
    }

    static func tunnel(type: String, connections: Int, producer given: Daemon? = nil, consumer givenConsumer: Daemon? = nil) async throws -> Tunnel {
        let producer: Daemon, consumer: Daemon
        if let given { producer = given } else { producer = try await Daemon(type: type, extra: ["--metrics", "127.0.0.1:0"]) }
        if let givenConsumer { consumer = givenConsumer } else { consumer = try await Daemon(type: type) }
        let tunnel = Tunnel(producer: producer, consumer: consumer, app: try ProducerApp(expectedConnections: connections))
        let stream = await Harness.s2uc(["stream_request", "--json", "--prod_s2cs", tunnel.producer.address, "--cons_s2cs", tunnel.consumer.address,
                                         "--server_cert", Harness.certificates.crt, "--remote_ip", "127.0.0.1", "--receiver_ports", "\(tunnel.app.port)",
                                         "--cons_receiver_ports", "\(tunnel.consumerPort)", "--num_conn", "1"])
        guard stream.status == 0 else {
            tunnel.stop()
            throw HarnessError("stream_request failed: \(stream.stderr)\n\(tunnel.producer.log)\n\(tunnel.consumer.log)")
        }
        return tunnel
    }

    @Test(arguments: types)
    func aKnownNumberOfBytesIsCountedOnBothSides(type: String) async throws {
        let tunnel = try await Self.tunnel(type: type, connections: 2)
        defer { tunnel.stop() }
        let (producer, consumer, app, consumerPort) = (tunnel.producer, tunnel.consumer, tunnel.app, tunnel.consumerPort)

        // One connection held open: both sides see it open.
        let held = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: consumerPort), deadline: .now + .seconds(5))
        try await held.writeAll(Array(repeating: 7, count: 1000), deadline: .now + .seconds(5))
        for daemon in [consumer, producer] {
            var open = -1
            let deadline = ContinuousClock.now + .seconds(10)
            while open != 1 && ContinuousClock.now < deadline {
                open = Self.number(try await Self.listed(daemon).traffic, "open_connections")
                if open != 1 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(open == 1, "\(type): the held connection is open on \(daemon === producer ? "the producer" : "the consumer") side")
        }
        held.close()

        // Then 16 MiB on a second connection, closed.
        let size = 16 << 20
        _ = try await sendRandomBytes(to: consumerPort, count: size)
        let received = await app.results()
        #expect(received.map(\.bytes).sorted() == [1000, size], "\(received.map(\.bytes))")
        let expected = size + 1000

        for (daemon, role) in [(consumer, "CONS"), (producer, "PROD")] {
            // Closed connections are counted once the proxy has logged them: wait for both.
            var traffic: [String: Any] = [:]
            var session: [String: Any] = [:]
            let deadline = ContinuousClock.now + .seconds(10)
            repeat {
                (session, traffic) = try await Self.listed(daemon)
                if Self.number(traffic, "bytes_in") >= expected && Self.number(traffic, "open_connections") == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            } while ContinuousClock.now < deadline
            let bytesIn = Self.number(traffic, "bytes_in")
            #expect(session["role"] as? String == role)
            #expect(traffic["counting"] as? String == (type == "Haproxy" ? "live" : "closed-connections"))
            #expect(Double(bytesIn) >= Double(expected) && Double(bytesIn) <= Double(expected) * 1.03,
                    "\(type) \(role): \(bytesIn) bytes in counted, \(expected) sent")
            #expect(Self.number(traffic, "bytes_out") >= 0 && Self.number(traffic, "bytes_out") < 65536, "\(traffic)")
            #expect(Self.number(traffic, "open_connections") == 0)
            #expect(Self.number(traffic, "total_connections") == 2, "\(type) \(role): \(traffic)")
            #expect(Self.number(session, "age_seconds") >= 0 && Self.number(session, "age_seconds") < 120)
            // The human line says the same.
            let human = await Harness.s2uc(["list"] + daemon.clientArguments)
            #expect(human.lines.count == 3 && human.lines[2].contains("connections 0 open, 2 in all, bytes in \(bytesIn), out "), "\(human.lines)")
        }

        // The producer side's metrics carry the same figures.
        let metrics = try await MetricsTests.scrape(try MetricsTests.metricsPort(producer))
        let producerSession = try await Self.listed(producer).session
        let prefix = try #require(producerSession["uid"] as? String)
        let counted = metrics.samples["s2cs_session_bytes_total{direction=in,role=PROD,session=\(prefix)}"] ?? -1
        #expect(counted >= Double(expected) && counted <= Double(expected) * 1.03, "\(metrics.samples.filter { $0.key.hasPrefix("s2cs_session") })")
        #expect(metrics.samples["s2cs_session_connections_total{role=PROD,session=\(prefix)}"] == 2)
        #expect(metrics.samples["s2cs_session_connections{role=PROD,session=\(prefix)}"] == 0)
    }

    /// What `list` and `/metrics` keep between requests (each session's rendered entry and metrics
    /// lines, the figures read from its proxy's log) is never older than what changed: a list and a
    /// scrape made before any traffic (twice, the second from what was kept), then traffic: once a
    /// list shows it, the scrape right after shows the same figures; after a release, neither shows
    /// the session, and its bytes stay in the gateway-wide total.
    @Test(arguments: types)
    func keptListingsAndSeriesShowEachChange(type: String) async throws {
        let tunnel = try await Self.tunnel(type: type, connections: 1)
        defer { tunnel.stop() }
        let producer = tunnel.producer
        let port = try MetricsTests.metricsPort(producer)
        let prefix = try #require(try await Self.listed(producer).session["uid"] as? String)
        let series = { (name: String, labels: String) in "\(name){\(labels)}" }
        let bytesIn = series("s2cs_session_bytes_total", "direction=in,role=PROD,session=\(prefix)")
        let connectionsTotal = series("s2cs_session_connections_total", "role=PROD,session=\(prefix)")
        for round in 1...2 {
            let traffic = try await Self.listed(producer).traffic
            #expect(Self.number(traffic, "bytes_in") == 0 && Self.number(traffic, "total_connections") == 0, "\(type), round \(round): \(traffic)")
            let metrics = try await MetricsTests.scrape(port)
            #expect(metrics.samples[bytesIn] == 0 && metrics.samples[connectionsTotal] == 0, "\(type), round \(round)")
            #expect(metrics.samples[series("s2cs_sessions", "role=PROD,state=active,type=\(type)")] == 1)
        }

        let size = 1 << 20
        _ = try await sendRandomBytes(to: tunnel.consumerPort, count: size)
        #expect(await tunnel.app.results().map(\.bytes) == [size])
        let traffic = try await Self.closedTraffic(producer, atLeast: size)
        let counted = Self.number(traffic, "bytes_in")
        #expect(counted >= size && Self.number(traffic, "total_connections") == 1, "\(type): \(traffic)")
        let after = try await MetricsTests.scrape(port)
        #expect(after.samples[bytesIn] == Double(counted), "\(type): \(after.samples.filter { $0.key.hasPrefix("s2cs_session") })")
        #expect(after.samples[connectionsTotal] == 1)

        let uid = try #require(sessionFolderEntries(producer.configFolder).first { $0.hasSuffix(".conf") && !$0.hasPrefix("s2ds-") }?.dropLast(".conf".count))
        let release = await Harness.s2uc(["release", String(uid)] + producer.clientArguments)
        #expect(release.status == 0, "\(release.stderr)")
        let json = try JSONOutputTests.object(await Harness.s2uc(["list", "--json"] + producer.clientArguments))
        #expect((json["sessions"] as? [[String: Any]])?.isEmpty == true, "\(json)")
        let gone = try await MetricsTests.scrape(port)
        #expect(!gone.samples.keys.contains { $0.contains("session=\(prefix)") }, "\(gone.samples.filter { $0.key.hasPrefix("s2cs_session") })")
        #expect(gone.samples[series("s2cs_sessions", "role=PROD,state=active,type=\(type)")] == 0)
        #expect((gone.samples[series("s2cs_bytes_total", "direction=in")] ?? 0) >= Double(counted))
    }

    /// The README's two gateways on one machine, as a user starts them: one HOME, no `--config-folder`.
    /// Both halves of a session have the same uid; each s2cs keeps its files (and reads its proxy's
    /// access log) in a folder of its own, so each counts what crossed it once.
    @Test func twoS2csOnOneHostWithTheDefaultFolderEachCountTheirOwnTraffic() async throws {
        let home = Harness.temporaryFolder("home")
        defer { try? FileManager.default.removeItem(at: home) }
        let tunnel = try await Self.tunnel(type: "Nginx", connections: 1,
                                           producer: try await Daemon(type: "Nginx", extra: ["--metrics", "127.0.0.1:0"], home: home),
                                           consumer: try await Daemon(type: "Nginx", home: home))
        defer { tunnel.stop() }
        let folders = [tunnel.producer.configFolder, tunnel.consumer.configFolder]
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.appendingPathComponent(".scistream").path).sorted()
                == folders.map(\.lastPathComponent).sorted(), "one folder per control port, nothing else")
        for (folder, role) in zip(folders, ["PROD", "CONS"]) {
            let configs = sessionFolderEntries(folder).filter { $0.hasSuffix(".conf") && !$0.hasPrefix("s2ds-") }
            #expect(configs.count == 1, "\(folder.path): \(sessionFolderEntries(folder))")
            let config = configs.first.flatMap { try? String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8) } ?? ""
            #expect(config.split(separator: "\n").first?.hasSuffix(" (\(role)), generated by s2cs: do not edit") == true,
                    "\(role)'s own config: \(config.prefix(120))")
        }
        #expect(sessionFolderEntries(folders[0]).filter { $0.hasSuffix(".conf") } == sessionFolderEntries(folders[1]).filter { $0.hasSuffix(".conf") },
                "the same uid on both sides")

        let size = 8 << 20
        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: size)
        #expect(await tunnel.app.results().map(\.sha256) == [sent])
        for (daemon, role) in [(tunnel.consumer, "CONS"), (tunnel.producer, "PROD")] {
            let traffic = try await Self.closedTraffic(daemon, atLeast: size)
            #expect(Self.number(traffic, "bytes_in") == size, "\(role): \(traffic)")
            #expect(Self.number(traffic, "total_connections") == 1, "\(role): \(traffic)")
        }
    }

    @Test func mockSessionsAndCountingOffShowAgeWithoutTraffic() async throws {
        let mock = try await Daemon()
        let off = try await Daemon(type: "Haproxy", extra: ["--traffic-counting", "False"])
        defer { mock.stop(); off.stop() }
        for daemon in [mock, off] {
            #expect(await Harness.s2uc(["inbound_request", "--num_conn", "1", "--receiver_ports", "5001", "--remote_ip", "127.0.0.1"] + daemon.clientArguments).status == 0)
            let json = try JSONOutputTests.object(await Harness.s2uc(["list", "--json"] + daemon.clientArguments))
            let session = try #require((json["sessions"] as? [[String: Any]])?.first)
            #expect(session["traffic"] is NSNull && Self.number(session, "age_seconds") >= 0, "\(session)")
            let human = await Harness.s2uc(["list"] + daemon.clientArguments)
            #expect(human.lines.count == 3 && human.lines[2].hasPrefix("          age ") && human.lines[2].hasSuffix(" s, traffic not counted"), "\(human.lines)")
        }
        // Counting off: no stats socket in the HAProxy config.
        let configs = try FileManager.default.contentsOfDirectory(atPath: off.configFolder.path).filter { $0.hasSuffix(".conf") && !$0.hasPrefix("s2ds-") }
        let config = try String(contentsOf: off.configFolder.appendingPathComponent(try #require(configs.first)), encoding: .utf8)
        #expect(!config.contains("stats socket"))
    }
}
