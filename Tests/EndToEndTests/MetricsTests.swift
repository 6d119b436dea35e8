import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import SciStreamCommandLine

/// `s2cs --metrics`: the page is parsed by a real parser of the Prometheus text format (the
/// prometheus_client package's, Debian's python3-prometheus-client) and checked against figures the
/// test knows: sessions it set up, released, and a proxy it killed.
@Suite(.serialized) struct MetricsTests {
    /// One HTTP exchange with the metrics port: sends `request` as is, returns everything read until the server closes.
    static func exchange(_ port: UInt16, _ request: String) async throws -> String {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: port), deadline: .now + .seconds(5))
        defer { socket.close() }
        try await socket.writeAll(Array(request.utf8), deadline: .now + .seconds(5))
        var received: [UInt8] = []
        while let bytes = try? await socket.read(max: 65536, deadline: .now + .seconds(10)), !bytes.isEmpty { received += bytes }
        return String(decoding: received, as: UTF8.self)
    }

    /// The metrics port an s2cs printed (`s2cs metrics on http://HOST:PORT/metrics`).
    static func metricsPort(_ daemon: Daemon) throws -> UInt16 {
        let text = (try? String(contentsOf: daemon.folder.appendingPathComponent("stdout"), encoding: .utf8)) ?? ""
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("s2cs metrics on http://127.0.0.1:") }, "\(text)")
        return try #require(UInt16(line.dropFirst("s2cs metrics on http://127.0.0.1:".count).dropLast("/metrics".count)))
    }

    /// The samples of the page, as the prometheus_client parser reads them: "name{k=v,...}" -> value
    /// (labels sorted), and each family's type.
    static func parse(_ page: String) throws -> (samples: [String: Double], types: [String: String]) {
        let folder = Harness.temporaryFolder("metrics")
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("page.txt")
        try page.write(to: file, atomically: true, encoding: .utf8)
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            samples, types = {}, {}
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                types[family.name] = family.type
                for s in family.samples:
                    key = s.name + "{" + ",".join(k + "=" + v for k, v in sorted(s.labels.items())) + "}"
                    if key in samples: sys.exit("duplicate sample " + key)
                    samples[key] = s.value
            print(json.dumps({"samples": samples, "types": types}))
            """
        let result = Harness.runSync("/usr/bin/python3", ["-c", script, file.path])
        guard result.status == 0 else { throw HarnessError("the prometheus_client parser refused the page: \(result.stderr)\n\(page)") }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        return (json["samples"] as? [String: Double] ?? [:], json["types"] as? [String: String] ?? [:])
    }

    static func scrape(_ port: UInt16) async throws -> (samples: [String: Double], types: [String: String]) {
        let response = try await exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let parts = response.components(separatedBy: "\r\n\r\n")
        #expect(parts[0].hasPrefix("HTTP/1.1 200 OK\r\n") && parts[0].contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "\(parts[0])")
        let body = parts.dropFirst().joined(separator: "\r\n\r\n")
        #expect(parts[0].contains("\r\nContent-Length: \(body.utf8.count)\r\n"))
        return try parse(body)
    }

    @Test func countersMatchWhatTheTestDid() async throws {
        let daemon = try await Daemon(type: "Haproxy", extra: ["--metrics", "127.0.0.1:0"])
        defer { daemon.stop() }
        let port = try Self.metricsPort(daemon)

        let before = try await Self.scrape(port)
        #expect(before.types["s2cs_requests"] == "counter" && before.types["s2cs_setup_duration_seconds"] == "histogram" && before.types["s2cs_sessions"] == "gauge", "\(before.types)")
        #expect(before.samples["s2cs_requests_total{role=PROD}"] == 0 && before.samples["s2cs_setup_duration_seconds_count{}"] == 0)
        #expect(before.samples["s2cs_info{type=Haproxy,version=\(SciStreamVersion.string)}"] == 1, "\(before.samples.keys.sorted())")

        // Three real HAProxy sessions, one released, one whose proxy the test kills, one unknown uid released.
        var uids: [String] = []
        for _ in 0..<3 {
            let output = await Harness.s2uc(["inbound_request", "--json", "--num_conn", "1", "--remote_ip", "127.0.0.1", "--receiver_ports", "5001"] + daemon.clientArguments)
            #expect(output.status == 0, "\(output.stderr)\n\(daemon.log)")
            uids.append(try #require(try JSONOutputTests.object(output)["uid"] as? String))
        }
        #expect(await Harness.s2uc(["release", uids[0]] + daemon.clientArguments).status == 0)
        #expect(await Harness.s2uc(["release", "0e0b9c6a-1111-4222-8333-444455556666"] + daemon.clientArguments).status == 1)
        let pidText = try String(contentsOf: daemon.configFolder.appendingPathComponent("\(uids[1]).pid"), encoding: .utf8)
        let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGKILL)

        var after = try await Self.scrape(port)
        let deadline = ContinuousClock.now + .seconds(10)
        while after.samples["s2cs_proxy_unexpected_exits_total{}"] != 1 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            after = try await Self.scrape(port)
        }
        let samples = after.samples
        #expect(samples["s2cs_proxy_unexpected_exits_total{}"] == 1)
        #expect(samples["s2cs_requests_total{role=PROD}"] == 3 && samples["s2cs_requests_total{role=CONS}"] == 0)
        #expect(samples["s2cs_setups_total{role=PROD}"] == 3)
        #expect(samples["s2cs_releases_total{}"] == 1)
        #expect(samples["s2cs_failures_total{status=NOT_FOUND,step=release}"] == 1)
        #expect(samples["s2cs_sessions{role=PROD,state=active,type=Haproxy}"] == 1)
        #expect(samples["s2cs_sessions{role=PROD,state=failed,type=Haproxy}"] == 1)
        #expect(samples["s2cs_sessions{role=CONS,state=active,type=Haproxy}"] == 0)
        // The histogram: three setups, cumulative buckets ending in +Inf == count, a positive sum.
        #expect(samples["s2cs_setup_duration_seconds_count{}"] == 3 && samples["s2cs_setup_duration_seconds_bucket{le=+Inf}"] == 3)
        #expect((samples["s2cs_setup_duration_seconds_sum{}"] ?? 0) > 0)
        let buckets = samples.filter { $0.key.hasPrefix("s2cs_setup_duration_seconds_bucket{le=") && !$0.key.contains("+Inf") }
            .map { (Double($0.key.dropFirst("s2cs_setup_duration_seconds_bucket{le=".count).dropLast()) ?? -1, $0.value) }.sorted { $0.0 < $1.0 }
        #expect(buckets.count == 12 && zip(buckets, buckets.dropFirst()).allSatisfy { $0.1 <= $1.1 } && (buckets.last?.1 ?? 0) <= 3)
    }

    @Test func theHTTPServerAnswersOnlyWhatItShould() async throws {
        let daemon = try await Daemon(extra: ["--metrics", "127.0.0.1:0"])
        defer { daemon.stop() }
        let port = try Self.metricsPort(daemon)
        // A client that connects and says nothing does not hold the page up for the next one.
        let silent = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: port), deadline: .now + .seconds(5))
        defer { silent.close() }

        let cases: [(String, String)] = [
            ("GET /metrics?x=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
            ("HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
            ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
            ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n"),
            ("hello\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 10000) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        ]
        for (request, expected) in cases {
            let response = try await Self.exchange(port, request)
            #expect(response.hasPrefix(expected), "\(request.prefix(40)): \(response.prefix(200))")
        }
        let head = try await Self.exchange(port, "HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(head.hasSuffix("\r\n\r\n"), "HEAD has no body")
        // The control port is not affected.
        #expect(await Harness.s2uc(["list"] + daemon.clientArguments).status == 0)
    }

    /// Idle connections in every slot of the metrics listener do not hold a scrape up: the newest
    /// connection takes the slot of the oldest idle one, at once.
    @Test func idleConnectionsDoNotBlockAScrape() async throws {
        let daemon = try await Daemon(extra: ["--metrics", "127.0.0.1:0"])
        defer { daemon.stop() }
        let port = try Self.metricsPort(daemon)
        var idle: [Socket] = []
        defer { idle.forEach { $0.close() } }
        for _ in 0..<64 {
            idle.append(try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: port), deadline: .now + .seconds(5)))
        }
        let started = ContinuousClock.now
        #expect(try await Self.scrape(port).samples["s2cs_releases_total{}"] == 0)
        #expect(ContinuousClock.now - started < .seconds(1), "the scrape waited \(ContinuousClock.now - started)")
    }

    @Test func onlyLoopbackUnlessAllowedAndOffByDefault() async throws {
        let refused = await Harness.run(Harness.s2cs, ["--metrics", "0.0.0.0:9100", "--ssl=False"])
        #expect(refused.status == 64)
        #expect(refused.stderr.hasPrefix("Error: --metrics 0.0.0.0:9100 is not a loopback address: "), "\(refused.stderr)")
        let alone = await Harness.run(Harness.s2cs, ["--metrics-allow-remote", "--ssl=False"])
        #expect(alone.status == 64 && alone.stderr.hasPrefix("Error: --metrics-allow-remote needs --metrics"), "\(alone.stderr)")
        let bad = await Harness.run(Harness.s2cs, ["--metrics", "127.0.0.1", "--ssl=False"])
        #expect(bad.status == 64 && bad.stderr.hasPrefix("Error: bad --metrics '127.0.0.1': "), "\(bad.stderr)")

        // Allowed: the wildcard address, reached here over loopback.
        let open = try await Daemon(extra: ["--metrics", "0.0.0.0:0", "--metrics-allow-remote"])
        defer { open.stop() }
        let stdout = (try? String(contentsOf: open.folder.appendingPathComponent("stdout"), encoding: .utf8)) ?? ""
        let line = try #require(stdout.split(separator: "\n").first { $0.hasPrefix("s2cs metrics on http://0.0.0.0:") })
        let port = try #require(UInt16(line.dropFirst("s2cs metrics on http://0.0.0.0:".count).dropLast("/metrics".count)))
        #expect(try await Self.scrape(port).samples["s2cs_releases_total{}"] == 0)

        // Off by default: no metrics line.
        let plain = try await Daemon()
        defer { plain.stop() }
        #expect(!((try? String(contentsOf: plain.folder.appendingPathComponent("stdout"), encoding: .utf8)) ?? "").contains("metrics"))
    }
}
