import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import SciStreamWire

/// Operating a gateway: the service manager's notifications (Type=notify, watchdog), SIGHUP that
/// does not stop s2cs, health and readiness probes, draining. Against a real s2cs.
@Suite(.serialized) struct OperationsTests {
    /// A unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
    final class NotifySocket: @unchecked Sendable {  // one test at a time
        let folder = Harness.temporaryFolder("notify")
        let path: String
        let fd: Int32

        init() throws {
            path = folder.appendingPathComponent("notify.sock").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard fd >= 0, bound == 0 else { throw HarnessError("cannot bind \(path): \(String(cString: strerror(errno)))") }
        }

        deinit {
            close(fd)
            try? FileManager.default.removeItem(at: folder)
        }

        /// The next datagram, within `seconds`; nil if none came.
        func next(within seconds: Double = 10) -> String? {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
        }

        /// Datagrams until one contains `field` (within `seconds`); all of them, in order.
        func until(_ field: String, within seconds: Double = 10) -> [String] {
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline, let message = next(within: deadline.timeIntervalSinceNow) {
                seen.append(message)
                if message.split(separator: "\n").contains(Substring(field)) { break }
            }
            return seen
        }
    }

    static func get(_ port: UInt16, _ path: String) async throws -> (status: String, body: String) {
        let response = try await MetricsTests.exchange(port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let parts = response.components(separatedBy: "\r\n\r\n")
        let statusLine = parts[0].split(separator: "\r\n").first.map(String.init) ?? ""
        return (statusLine, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    @Test func readyReloadWatchdogAndStoppingReachTheServiceManager() async throws {
        let notify = try NotifySocket()
        let daemon = try await Daemon(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        let startup = notify.until("READY=1")
        #expect(startup.last?.contains("READY=1") == true && startup.last?.contains("STATUS=serving on 127.0.0.1:\(daemon.port)") == true, "\(startup)")
        // Watchdog pings every WATCHDOG_USEC / 2 while the registry answers.
        let pings = notify.until("WATCHDOG=1", within: 3)
        #expect(pings.last == "WATCHDOG=1\n", "\(pings)")
        let second = notify.until("WATCHDOG=1", within: 3)
        #expect(second.last == "WATCHDOG=1\n", "\(second)")

        // SIGHUP is a reload (systemctl reload), not a stop: RELOADING=1 with the monotonic time, then READY=1.
        kill(daemon.pid, SIGHUP)
        let reload = notify.until("RELOADING=1")
        let reloading = try #require(reload.last, "\(reload)")
        #expect(reloading.split(separator: "\n").contains { $0.hasPrefix("MONOTONIC_USEC=") && UInt64($0.dropFirst(15)) != nil }, "\(reloading)")
        let ready = notify.until("READY=1")
        #expect(ready.last?.contains("READY=1") == true, "\(ready)")
        #expect(daemon.process.isRunning, "s2cs stopped on SIGHUP")
        let listed = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(listed.status == 0, "\(listed.stderr)")

        kill(daemon.pid, SIGTERM)
        let stopping = notify.until("STOPPING=1")
        #expect(stopping.last == "STOPPING=1\n", "\(stopping)")
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 0)
    }

    @Test func withoutAServiceManagerNothingIsSentAndSIGHUPKeepsServing() async throws {
        let daemon = try await Daemon()
        kill(daemon.pid, SIGHUP)
        try await waitUntil("s2cs logs the reload") { daemon.log.contains("reloading") }
        #expect(daemon.process.isRunning)
        let listed = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(listed.status == 0 && listed.lines.first?.hasPrefix("uid ") == true, "\(listed.stdout)\(listed.stderr)")
    }

    @Test func healthAndReadinessProbesAndDraining() async throws {
        let daemon = try await Daemon(type: "Haproxy", extra: ["--metrics", "127.0.0.1:0"])
        let port = try MetricsTests.metricsPort(daemon)
        var health = try await Self.get(port, "/healthz")
        #expect(health.status == "HTTP/1.1 200 OK" && health.body == "ok\n", "\(health)")
        var ready = try await Self.get(port, "/readyz")
        #expect(ready.status == "HTTP/1.1 200 OK" && ready.body == "ready\n", "\(ready)")

        // Draining: SIGUSR1. Not ready, still healthy, the state in the metrics; a new request is
        // refused and starts nothing.
        kill(daemon.pid, SIGUSR1)
        try await waitUntil("/readyz says draining") { (try? await Self.get(port, "/readyz"))?.status == "HTTP/1.1 503 Service Unavailable" }
        ready = try await Self.get(port, "/readyz")
        #expect(ready.body == "not ready: draining (SIGUSR1): no new sessions\n", "\(ready)")
        health = try await Self.get(port, "/healthz")
        #expect(health.status == "HTTP/1.1 200 OK")
        let page = try await MetricsTests.scrape(port)
        #expect(page.samples["s2cs_draining{}"] == 1, "\(page.samples.filter { $0.key.hasPrefix("s2cs_draining") })")
        let refused = await Harness.s2uc(["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "1"] + daemon.clientArguments)
        #expect(refused.status == 1, "\(refused.stdout)")
        #expect(refused.stderr.contains("UNAVAILABLE: this s2cs is draining: it takes no new sessions"), "\(refused.stderr)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: daemon.configFolder.path)) ?? []
        #expect(files.filter { $0.hasSuffix(".conf") || $0.hasSuffix(".pid") }.isEmpty, "\(files)")

        // SIGUSR2 ends it.
        kill(daemon.pid, SIGUSR2)
        try await waitUntil("/readyz says ready") { (try? await Self.get(port, "/readyz"))?.status == "HTTP/1.1 200 OK" }
        let after = try await MetricsTests.scrape(port)
        #expect(after.samples["s2cs_draining{}"] == 0)

        // Other paths are 404.
        let missing = try await Self.get(port, "/nope")
        #expect(missing.status == "HTTP/1.1 404 Not Found")
    }

    @Test func drainingLetsExistingSessionsFinish() async throws {
        // The producer side's session exists before draining starts; its other half is set up on
        // the consumer side, then the producer side drains: the session carries bytes and is
        // released as usual, while a new one is refused.
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Haproxy")
        let tunnel = try await TunnelTests.setUp(type: "Haproxy", appPort: app.port, consumerPort: try TunnelTests.freePort(), producer: producer)
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        kill(producer.pid, SIGUSR1)
        try await waitUntil("s2cs logs draining") { producer.log.contains("draining: new sessions are refused") }
        let refused = await Harness.s2uc(["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--num_conn", "1"] + producer.clientArguments)
        #expect(refused.status == 1 && refused.stderr.contains("draining"), "\(refused.stderr)")
        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 8 << 20)
        let received = await app.results()
        #expect(received.first?.bytes == 8 << 20 && received.first?.sha256 == sent)
        for daemon in [tunnel.producer, tunnel.consumer] {
            let released = await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments)
            #expect(released.status == 0 && released.lines == ["Release completed"], "\(released.stdout)\(released.stderr)")
        }
    }
}

/// SIGHUP reloads the control certificate and key, the client secret file and the `@FILE` lists,
/// without ending sessions; a bad new file keeps the old value.
@Suite(.serialized) struct ReloadTests {
    /// A certificate and key of their own (made by certs/make-dev-cert.sh), in `folder`.
    static func makeCertificate(in folder: URL) throws {
        let made = Harness.runSync("/bin/bash", [Harness.repoRoot.appendingPathComponent("certs/make-dev-cert.sh").path, "-o", folder.path, "127.0.0.1", "localhost"])
        guard made.status == 0 else { throw HarnessError("make-dev-cert.sh: \(made.stderr)") }
    }

    /// A certificate and key in `folder`, and a copy of the certificate as `kept` (to pin it later):
    /// the paths of the certificate, the key and the copy.
    static func certificateWithCopy(in folder: URL, kept: String) throws -> (crt: String, key: String, copy: String) {
        try makeCertificate(in: folder)
        let crt = folder.appendingPathComponent("server.crt").path, key = folder.appendingPathComponent("server.key").path
        let copy = folder.appendingPathComponent(kept).path
        try FileManager.default.copyItem(atPath: crt, toPath: copy)
        return (crt, key, copy)
    }

    @Test func aRenewedCertificateIsServedAfterSIGHUPWhileATunnelCarriesData() async throws {
        let certs = Harness.temporaryFolder("renew")
        defer { try? FileManager.default.removeItem(at: certs) }
        let (crt, key, old) = try Self.certificateWithCopy(in: certs, kept: "old.crt")
        let producer = try await Daemon(type: "Haproxy", extra: ["--server_crt", crt, "--server_key", key])
        let pinnedOld = ["--s2cs", producer.address, "--server_cert", old]

        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        // The tunnel's client side goes through the consumer gateway (the test's shared certificate).
        let inbound = await Harness.s2uc(["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--num_conn", "1"] + pinnedOld)
        #expect(inbound.status == 0, "\(inbound.stderr)")
        let uid = String(try #require(inbound.lines.dropFirst().first).prefix(36))
        let listener = try #require(inbound.lines.last?.components(separatedBy: "'").dropFirst().first)
        let consumer = try await Daemon(type: "Haproxy")
        let consumerPort = try TunnelTests.freePort(0, within: consumer.ports)
        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(consumerPort)", uid, listener])
        #expect(outbound.status == 0, "\(outbound.stderr)")

        // A stream runs through the tunnel while the certificate is renewed and s2cs reloads.
        let sending = Task { try await sendRandomBytes(to: consumerPort, count: 64 << 20) }
        #expect(await app.awaitBytes(1 << 20), "the stream started")
        try FileManager.default.removeItem(atPath: crt)
        try FileManager.default.removeItem(atPath: key)
        try Self.makeCertificate(in: certs)
        kill(producer.pid, SIGHUP)
        try await waitUntil("s2cs logs the reload") { producer.log.contains("reloaded") }
        #expect(producer.log.contains("certificate \(crt)"), "\(producer.log)")
        let sent = try await sending.value
        let received = await app.results()
        #expect(received.first?.bytes == 64 << 20 && received.first?.sha256 == sent, "the stream lost bytes across the reload")

        // New connections get the new certificate: pinning the new one works, the old one is refused.
        let withNew = await Harness.s2uc(["list", "--s2cs", producer.address, "--server_cert", crt])
        #expect(withNew.status == 0, "\(withNew.stderr)")
        let withOld = await Harness.s2uc(["list"] + pinnedOld)
        #expect(withOld.status == 1, "the old certificate still verifies: \(withOld.stdout)")
        // The session is still there, and is released as usual.
        let released = await Harness.s2uc(["release", uid, "--s2cs", producer.address, "--server_cert", crt])
        #expect(released.lines == ["Release completed"], "\(released.stdout)\(released.stderr)")
        _ = await Harness.s2uc(["release", uid] + consumer.clientArguments)
    }

    @Test func aBadNewCertificateKeepsTheOldOne() async throws {
        let certs = Harness.temporaryFolder("renew-bad")
        defer { try? FileManager.default.removeItem(at: certs) }
        let (crt, key, good) = try Self.certificateWithCopy(in: certs, kept: "good.crt")
        let daemon = try await Daemon(extra: ["--server_crt", crt, "--server_key", key])
        try "not a certificate\n".write(toFile: crt, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await waitUntil("s2cs logs the reload") { daemon.log.contains("reloaded") }
        #expect(daemon.log.contains("reload: kept the old value") && daemon.log.contains(crt), "\(daemon.log)")
        let listed = await Harness.s2uc(["list", "--s2cs", daemon.address, "--server_cert", good])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(daemon.process.isRunning)
    }

    @Test func allowedTargetsFromAFileChangeOnSIGHUP() async throws {
        let folder = Harness.temporaryFolder("targets")
        defer { try? FileManager.default.removeItem(at: folder) }
        let list = folder.appendingPathComponent("allowed-targets")
        try "# the instrument network\n10.1.0.0/16\n".write(to: list, atomically: true, encoding: .utf8)
        let daemon = try await Daemon(extra: ["--allowed-targets", "@\(list.path)"])
        let request = ["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "1"] + daemon.clientArguments
        let refused = await Harness.s2uc(request)
        #expect(refused.status == 1 && refused.stderr.contains("PERMISSION_DENIED"), "\(refused.stdout)\(refused.stderr)")

        try "10.1.0.0/16, 127.0.0.1/32:5001\n".write(to: list, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await waitUntil("s2cs logs the reload") { daemon.log.contains("reloaded") }
        let accepted = await Harness.s2uc(request)
        #expect(accepted.status == 0, "\(accepted.stderr)")

        // A list file that no longer parses keeps the list as it was.
        try "10.1.0.0/33\n".write(to: list, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await waitUntil("s2cs logs the failed reload") { daemon.log.contains("reload failed: everything stays as it was") }
        #expect(daemon.log.contains("--allowed-targets"), "\(daemon.log)")
        let still = await Harness.s2uc(request)
        #expect(still.status == 0, "\(still.stderr)")
    }

    @Test func aListFlagNamesItsFileWhenItCannotBeRead() async throws {
        let missing = await Harness.run(Harness.s2cs, ["--ssl=False", "--port", "0", "--allowed-targets", "@/nonexistent/allowed"])
        #expect(missing.status == 64)
        #expect(missing.stderr.hasPrefix("Error: cannot read --allowed-targets /nonexistent/allowed: "), "\(missing.stderr)")
    }
}

/// `--audit-log`: one JSON line per decision, with time, client, identity, uid prefix, targets.
@Suite struct AuditLogTests {
    static func entries(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    @Test func everyDecisionIsOneJSONLine() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let daemon = try await Daemon(type: "Haproxy")
        let inbound = await Harness.s2uc(["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--num_conn", "1"] + daemon.clientArguments)
        #expect(inbound.status == 0, "\(inbound.stderr)")
        let uid = String(try #require(inbound.lines.dropFirst().first).prefix(36))
        // Refused by the target policy: the gateway's own control port.
        let refused = await Harness.s2uc(["inbound_request", "--remote_ip", "127.0.0.1", "--receiver_ports", "\(daemon.port)", "--num_conn", "1"] + daemon.clientArguments)
        #expect(refused.status == 1)
        #expect(await Harness.s2uc(["release", uid] + daemon.clientArguments).status == 0)

        let lines = try Self.entries(daemon.configFolder.appendingPathComponent("audit.log").path)
        let events = lines.map { "\($0["event"] ?? "")/\($0["status"] ?? "")" }
        // A request is answered (and recorded) once its hello has come.
        #expect(Set(events.prefix(3)) == ["request/OK", "hello/OK", "update/OK"] && events.last == "release/OK", "\(events)")
        #expect(events.contains("hello/PERMISSION_DENIED"), "\(events)")
        for line in lines {
            #expect((line["time"] as? String)?.hasSuffix("Z") == true && line["client"] as? String == "127.0.0.1", "\(line)")
        }
        let hello = try #require(lines.first { $0["event"] as? String == "hello" && $0["status"] as? String == "OK" })
        #expect(hello["session"] as? String == String(uid.prefix(8)) && hello["role"] as? String == "PROD", "\(hello)")
        #expect(hello["targets"] as? [String] == ["127.0.0.1:\(app.port)"], "\(hello)")
        let denied = try #require(lines.first { $0["status"] as? String == "PERMISSION_DENIED" }, "\(events)")
        #expect((denied["reason"] as? String)?.isEmpty == false)
        // The whole uid (the session's secret) is never written.
        let text = try String(contentsOfFile: daemon.configFolder.appendingPathComponent("audit.log").path, encoding: .utf8)
        #expect(!text.contains(uid))
        let mode = try FileManager.default.attributesOfItem(atPath: daemon.configFolder.appendingPathComponent("audit.log").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func hostileTextFromTheWireStaysInsideItsJSONString() async throws {
        let daemon = try await Daemon(tls: false)
        // A hello with control characters and quotes in its target (and in the uid of a forged frame,
        // which is refused when it is decoded and so never reaches the audit log).
        let hostile = "ab\"c\n{\"event\":\"forged\"}\u{1b}[2J"
        _ = try await callOnce(daemon.target, .hello(Hello(token: "INVALID_TOKEN", uid: .newRandom(), role: .prod, prodListeners: ["\(hostile):5001"])))
        let forged = try await repliesToForgedFrames(frame(.hello(Hello(token: "INVALID_TOKEN", uid: .mock, role: .prod, prodListeners: ["\(hostile):5001"])),
                                                            forgingUID: hostile), port: daemon.port)
        guard case .helloReply(let refused) = forged.first, forged.count == 1 else { Issue.record("\(forged)"); return }
        #expect(refused.code == .invalidArgument, "\(refused)")
        // Refused at decoding, and audited as a refusal like any other (with its uid's prefix escaped).
        let lines = try Self.entries(daemon.configFolder.appendingPathComponent("audit.log").path)
        #expect(!lines.isEmpty)
        #expect(!lines.contains { $0["event"] as? String == "forged" }, "\(lines)")
        #expect(lines.contains { $0["event"] as? String == "hello" && $0["status"] as? String == "INVALID_ARGUMENT" && ($0["reason"] as? String)?.contains("is not a session id") == true }, "\(lines)")
    }

    @Test func noneWritesNoAuditLog() async throws {
        let daemon = try await Daemon(extra: ["--audit-log", "none"])
        #expect(await Harness.s2uc(["list"] + daemon.clientArguments).status == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.configFolder.appendingPathComponent("audit.log").path))
    }
}

/// The gateway-wide series an operator alerts on.
@Suite(.serialized) struct GatewayMetricsTests {
    @Test func totalsSurviveSessionEndsAndSeriesStartAtZero() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Haproxy", extra: ["--metrics", "127.0.0.1:0"])
        let port = try MetricsTests.metricsPort(producer)
        let before = try await MetricsTests.scrape(port)
        #expect(before.samples["s2cs_bytes_total{direction=in}"] == 0)
        #expect(before.samples["s2cs_failures_total{status=PERMISSION_DENIED,step=hello}"] == 0, "series start at 0")
        #expect(before.samples["s2cs_auth_checks_total{result=valid}"] == 0)
        #expect(before.samples["s2cs_port_pool_ports{state=size}"] == Double(producer.ports.count))
        #expect(before.samples["s2cs_port_pool_ports{state=held}"] == 0)
        let started = try #require(before.samples["process_start_time_seconds{}"])
        #expect(abs(Date().timeIntervalSince1970 - started) < 120)
        // The certificate's notAfter, as openssl reads it.
        let end = Harness.runSync("/usr/bin/openssl", ["x509", "-in", Harness.certificates.crt, "-noout", "-enddate"])
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        let text = end.stdout.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "notAfter=", with: "").replacingOccurrences(of: "  ", with: " ")
        let notAfter = try #require(formatter.date(from: text), "\(end.stdout)")
        #expect(before.samples["s2cs_certificate_expiry_timestamp_seconds{}"] == notAfter.timeIntervalSince1970)

        let tunnel = try await TunnelTests.setUp(type: "Haproxy", appPort: app.port, consumerPort: try TunnelTests.freePort(), producer: producer)
        defer { tunnel.consumer.stop() }
        let during = try await MetricsTests.scrape(port)
        #expect(during.samples["s2cs_port_pool_ports{state=held}"] == 1)
        _ = try await sendRandomBytes(to: tunnel.consumerPort, count: 4 << 20)
        #expect(await app.results().first?.bytes == 4 << 20)
        for daemon in [producer, tunnel.consumer] {
            #expect(await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments).status == 0)
        }
        // The session has ended; its bytes stay in the gateway's total.
        let after = try await MetricsTests.scrape(port)
        #expect(after.samples["s2cs_port_pool_ports{state=held}"] == 0)
        let total = try #require(after.samples["s2cs_bytes_total{direction=in}"])
        #expect(total >= Double(4 << 20) && total < Double(5 << 20), "\(total)")
        #expect(after.types["s2cs_bytes"] == "counter", "\(after.types)")
    }
}
