import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import SciStreamServer
import TestPorts

/// Real tunnels: two s2cs with a real proxy type, s2uc as the user runs it, bytes through the tunnel.
@Suite(.serialized) struct TunnelTests {
    static let types = ["Haproxy", "Nginx", "Stunnel"]

    struct Tunnel {
        let producer: Daemon
        let consumer: Daemon
        let uid: String
        let producerListeners: [String]
        let consumerPort: UInt16

        func proxyPID(_ daemon: Daemon) -> Int32? {
            let path = daemon.configFolder.appendingPathComponent("\(uid).pid").path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }

        func sessionFiles(_ daemon: Daemon) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: daemon.configFolder.path)) ?? [])
                .filter { $0.hasPrefix(uid) && !$0.hasSuffix(".log") }
        }
    }

    /// Sets up an inbound and an outbound request towards `appPort`.
    static func setUp(type: String, appPort: UInt16, consumerPort: UInt16, numConn: Int = 1,
                      producer: Daemon? = nil, consumer: Daemon? = nil) async throws -> Tunnel {
        let producer = if let producer { producer } else { try await Daemon(type: type) }
        let consumer = if let consumer { consumer } else { try await Daemon(type: type) }
        let inbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(appPort)", "--num_conn", "\(numConn)"])
        guard inbound.status == 0, inbound.lines.count == 7 else {
            throw HarnessError("inbound_request failed (\(inbound.status)): \(inbound.stderr)\n\(producer.log)")
        }
        let uid = String(inbound.lines[1].prefix(36))
        let listeners = inbound.lines[6].dropFirst("Listeners: [".count).dropLast()
            .split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "' ")) }
        // Client-chosen listen ports must lie in the consumer-side s2cs's --port-range.
        let consumerPort = try freePort(consumerPort, within: consumer.ports)
        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(consumerPort)", uid, listeners.joined(separator: ",")])
        guard outbound.status == 0 else {
            throw HarnessError("outbound_request failed (\(outbound.status)): \(outbound.stderr)\n\(consumer.log)")
        }
        #expect(outbound.lines.last == "Listeners: ['127.0.0.1:\(consumerPort)']")
        return Tunnel(producer: producer, consumer: consumer, uid: uid, producerListeners: listeners, consumerPort: consumerPort)
    }

    /// `preferred` when it lies in `block`, else a free port of the block (client-chosen listen
    /// ports must lie in the consumer-side s2cs's --port-range).
    static func freePort(_ preferred: UInt16, within block: PortBlock) throws -> UInt16 {
        if block.contains(preferred) { return preferred }
        for port in block.ports.reversed() where Socket.canBind(host: "127.0.0.1", port: port) { return port }
        throw HarnessError("no free port in \(block)")
    }

    /// A port for a consumer-side listener, from this run's reserved blocks (see `PortBlock`).
    static func freePort() throws -> UInt16 { try PortBlock.port() }

    @Test(arguments: types)
    func sixtyFourMiBArriveIntactThenReleaseLeavesNothing(type: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await Self.setUp(type: type, appPort: app.port, consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let pids = [tunnel.proxyPID(tunnel.producer), tunnel.proxyPID(tunnel.consumer)].compactMap { $0 }
        #expect(pids.count == 2, "both sides wrote a pid file")
        #expect(pids.allSatisfy(processExists))

        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 64 << 20)
        let received = await app.results()
        #expect(received.count == 1)
        #expect(received.first?.bytes == 64 << 20)
        #expect(received.first?.sha256 == sent)

        for daemon in [tunnel.producer, tunnel.consumer] {
            let release = await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments)
            #expect(release.status == 0, "\(release.stderr)")
            #expect(tunnel.sessionFiles(daemon).isEmpty, "files left: \(tunnel.sessionFiles(daemon))")
        }
        for pid in pids { #expect(!processExists(pid), "proxy \(pid) still running after release") }
    }

    @Test(arguments: types)
    func aClientWithoutTheSessionKeyGetsNothingThrough(type: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await Self.setUp(type: type, appPort: app.port, consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let listener = tunnel.producerListeners[0]
        let folder = Harness.temporaryFolder("stranger")
        defer { try? FileManager.default.removeItem(at: folder) }
        // A stranger with no certificate, and one with a self-signed certificate of its own.
        let made = Harness.runSync("/usr/bin/openssl", ["req", "-x509", "-newkey", "ed25519", "-nodes", "-subj", "/CN=scistream-s2ds",
                                                         "-keyout", folder.appendingPathComponent("k.pem").path, "-out", folder.appendingPathComponent("c.pem").path, "-days", "1"])
        #expect(made.status == 0, "\(made.stderr)")
        let attempts: [[String]] = [
            [],
            ["-cert", folder.appendingPathComponent("c.pem").path, "-key", folder.appendingPathComponent("k.pem").path],
        ]
        for extra in attempts {
            let payload = folder.appendingPathComponent("payload")
            try Data(repeating: 0x41, count: 4096).write(to: payload)
            // Refused, it ends at once; the harness stops it (and fails the test) after 30 s.
            _ = await Harness.run("/usr/bin/openssl", ["s_client", "-connect", listener, "-quiet", "-no_ign_eof"] + extra,
                                  input: payload, timeout: .seconds(30))
        }
        // The real consumer still gets through, and only its bytes reached the app.
        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 1 << 20)
        let received = await app.results()
        #expect(received.count == 1)
        #expect(received.first?.bytes == 1 << 20, "the stranger's bytes must not reach the producer app")
        #expect(received.first?.sha256 == sent)
        for daemon in [tunnel.producer, tunnel.consumer] {
            _ = await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments)
        }
    }
}

/// Supervision, shutdown, faults and concurrency of real tunnels, through s2cs and s2uc.
@Suite(.serialized) struct TunnelLifecycleTests {
    static func freePort() throws -> UInt16 { try TunnelTests.freePort() }

    static func release(_ tunnel: TunnelTests.Tunnel) async {
        for daemon in [tunnel.producer, tunnel.consumer] {
            _ = await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments)
        }
    }

    @Test(arguments: ["Haproxy", "Nginx"])
    func plaintextDataPlaneCarriesBytesAndSaysSoInItsListeners(type: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: type, extra: ["--data-plane-tls=False", "--peer-gateways", "127.0.0.1"])
        let consumer = try await Daemon(type: type, extra: ["--data-plane-tls", "False"])
        defer { producer.stop(); consumer.stop() }
        #expect(producer.log.contains("PLAINTEXT"))
        let tunnel = try await TunnelTests.setUp(type: type, appPort: app.port, consumerPort: try Self.freePort(), producer: producer, consumer: consumer)
        #expect(tunnel.producerListeners == ["tcp://127.0.0.1:\(producer.ports.lower)"])
        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 8 << 20)
        let received = await app.results()
        #expect(received.first?.sha256 == sent)
        await Self.release(tunnel)
    }

    @Test(arguments: ["Haproxy", "Nginx"])
    func proxyBufferSizeReachesTheConfigAndBytesArriveIntact(type: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: type, extra: ["--proxy-buffer-size", "32k"])
        let consumer = try await Daemon(type: type, extra: ["--proxy_buffer_size=default"])
        defer { producer.stop(); consumer.stop() }
        let tunnel = try await TunnelTests.setUp(type: type, appPort: app.port, consumerPort: try Self.freePort(), producer: producer, consumer: consumer)
        let config = { (daemon: Daemon) in
            (try? String(contentsOf: daemon.configFolder.appendingPathComponent("\(tunnel.uid).conf"), encoding: .utf8)) ?? ""
        }
        let (sized, unsized) = (config(producer), config(consumer))
        #expect(sized.contains(type == "Haproxy" ? "\n    tune.bufsize 32768\n" : "\n    proxy_buffer_size 32k;\n"), "\(sized)")
        #expect(!unsized.isEmpty && !unsized.contains("tune.bufsize") && !unsized.contains("proxy_buffer_size"), "\(unsized)")
        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 16 << 20)
        let received = await app.results()
        #expect(received.first?.bytes == 16 << 20)
        #expect(received.first?.sha256 == sent)
        await Self.release(tunnel)
    }

    @Test func gatewaysStartedDifferentlyAreRefusedAtSetup() async throws {
        let plain = try await Daemon(type: "Haproxy", extra: ["--data-plane-tls=False", "--peer-gateways", "127.0.0.1"])
        let encrypted = try await Daemon(type: "Haproxy")
        defer { plain.stop(); encrypted.stop() }
        for (producer, consumer, expected) in [(plain, encrypted, "belongs to an s2cs started with --data-plane-tls=False"),
                                              (encrypted, plain, "is encrypted")] {
            let inbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "1"])
            #expect(inbound.status == 0, "\(inbound.stderr)")
            let uid = String(inbound.lines[1].prefix(36))
            let listener = inbound.lines[6].dropFirst("Listeners: ['".count).dropLast(2)
            let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(try TunnelTests.freePort(0, within: consumer.ports))", uid, String(listener)])
            #expect(outbound.status == 1)
            #expect(outbound.stderr.contains(expected) && outbound.stderr.contains("start both gateways' s2cs the same way"), "\(outbound.stderr)")
            // Nothing half-made on the consumer side.
            let list = await Harness.s2uc(["list"] + consumer.clientArguments)
            #expect(!list.stdout.contains(String(uid.prefix(8))), "\(list.stdout)")
            _ = await Harness.s2uc(["release", uid] + producer.clientArguments)
        }
    }

    @Test func aProxyKilledMidSessionIsNoticedAndReleaseStillCleansUp() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await TunnelTests.setUp(type: "Haproxy", appPort: app.port, consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let pid = try #require(tunnel.proxyPID(tunnel.producer))
        // Listed once before: what list keeps of the session must not hide the exit afterwards.
        let before = await Harness.s2uc(["list"] + tunnel.producer.clientArguments).stdout
        #expect(before.contains("active") && !before.contains("failed"), "\(before)")
        kill(pid, SIGKILL)
        var listed = ""
        for _ in 0..<100 {
            listed = await Harness.s2uc(["list"] + tunnel.producer.clientArguments).stdout
            if listed.contains("failed") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(listed.contains("failed") && listed.contains("exited unexpectedly") && listed.contains("SIGKILL"), "\(listed)")
        #expect(tunnel.producer.log.contains("proxy exited unexpectedly"), "\(tunnel.producer.log)")
        let release = await Harness.s2uc(["release", tunnel.uid] + tunnel.producer.clientArguments)
        #expect(release.status == 0)
        #expect(release.stdout.contains("exited unexpectedly"), "\(release.stdout)")
        #expect(tunnel.sessionFiles(tunnel.producer).isEmpty)
        _ = await Harness.s2uc(["release", tunnel.uid] + tunnel.consumer.clientArguments)
    }

    @Test func sigtermStopsEveryProxyAndSigkillLeavesThemToTheNextS2cs() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await TunnelTests.setUp(type: "Nginx", appPort: app.port, consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let producerProxy = try #require(tunnel.proxyPID(tunnel.producer))
        let consumerProxy = try #require(tunnel.proxyPID(tunnel.consumer))

        // SIGTERM: s2cs stops its proxies before exiting.
        tunnel.producer.stop()
        #expect(tunnel.producer.process.terminationStatus == 0)
        #expect(!processExists(producerProxy))
        #expect(tunnel.sessionFiles(tunnel.producer).isEmpty)

        // SIGKILL: the proxy outlives s2cs; the next s2cs on the same folder stops it.
        kill(tunnel.consumer.pid, SIGKILL)
        tunnel.consumer.process.waitUntilExit()
        #expect(processExists(consumerProxy))
        let successor = try await Daemon(type: "Nginx", ports: tunnel.consumer.ports, extra: ["--config-folder", tunnel.consumer.configFolder.path, "--max-ports-per-client", "100"])
        defer { successor.stop() }
        #expect(!processExists(consumerProxy), "the stale proxy must be stopped at start")
        #expect(tunnel.sessionFiles(tunnel.consumer).isEmpty)
        // Its ports are usable again.
        let inbound = await Harness.s2uc(["inbound_request"] + successor.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--num_conn", "10"])
        #expect(inbound.status == 0, "\(inbound.stderr)")
    }

    /// s2cs writes a session's config, then spawns its proxy, then writes `<uid>.pid`: a SIGKILL in
    /// between leaves a proxy no pid file names. That moment is made here by removing the pid file
    /// after the kill; the next s2cs on the folder finds the proxy by its config and stops it.
    @Test(arguments: TunnelTests.types)
    func aProxyWithoutAPidFileIsFoundByItsConfigAtTheNextStart(type: String) async throws {
        let daemon = try await Daemon(type: type)
        defer { daemon.stop() }
        let inbound = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(try Self.freePort())", "--num_conn", "1"])
        #expect(inbound.status == 0, "\(inbound.stderr)")
        let folder = daemon.configFolder.path
        let pidFiles = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".pid") && !$0.hasSuffix(".nginx.pid") }
        let proxy = try #require(pidFiles.count == 1 ? try? String(contentsOfFile: folder + "/" + pidFiles[0], encoding: .utf8) : nil)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let pid = try #require(Int32(proxy))
        defer { if processExists(pid) { kill(pid, SIGKILL) } }
        kill(daemon.pid, SIGKILL)
        daemon.process.waitUntilExit()
        #expect(unlink(folder + "/" + pidFiles[0]) == 0)
        #expect(processExists(pid))

        let successor = try await Daemon(type: type, ports: daemon.ports, extra: ["--config-folder", folder])
        defer { successor.stop() }
        #expect(!processExists(pid), "the proxy no pid file named must be stopped at start: \(successor.log)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init).filter { other in
            other != successor.pid && processExists(other) && (try? String(contentsOfFile: "/proc/\(other)/cmdline", encoding: .utf8))?.contains(folder) == true
        } ?? []
        #expect(left.isEmpty, "processes still running from \(folder): \(left)")
        #expect(successor.log.contains("stale proxy found by its config, not by a pid file"), "\(successor.log)")
    }

    @Test func twoSessionsOnOneS2csCarryTheirOwnBytes() async throws {
        let appA = try ProducerApp(expectedConnections: 1), appB = try ProducerApp(expectedConnections: 1)
        defer { appA.stop(); appB.stop() }
        let a = try await TunnelTests.setUp(type: "Stunnel", appPort: appA.port, consumerPort: try Self.freePort())
        defer { a.producer.stop(); a.consumer.stop() }
        let b = try await TunnelTests.setUp(type: "Stunnel", appPort: appB.port, consumerPort: try Self.freePort(), producer: a.producer, consumer: a.consumer)
        #expect(a.uid != b.uid)
        async let sentA = sendRandomBytes(to: a.consumerPort, count: 16 << 20)
        async let sentB = sendRandomBytes(to: b.consumerPort, count: 8 << 20)
        let (digestA, digestB) = try await (sentA, sentB)
        #expect(await appA.results().first?.sha256 == digestA)
        #expect(await appB.results().first?.sha256 == digestB)
        await Self.release(a)
        await Self.release(b)
    }

    @Test func releaseWhileDataFlowsStopsTheProxy() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await TunnelTests.setUp(type: "Haproxy", appPort: app.port, consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let pids = [tunnel.proxyPID(tunnel.producer), tunnel.proxyPID(tunnel.consumer)].compactMap { $0 }
        let sending = Task { try? await sendRandomBytes(to: tunnel.consumerPort, count: 4 << 30) }
        #expect(await app.awaitBytes(1 << 20), "no data flowed through the tunnel")
        await Self.release(tunnel)
        for pid in pids { #expect(!processExists(pid)) }
        sending.cancel()
        _ = await sending.value
        #expect(tunnel.sessionFiles(tunnel.producer).isEmpty && tunnel.sessionFiles(tunnel.consumer).isEmpty)
    }

    @Test func fiftyRapidSetupReleaseCyclesLeaveNothingBehind() async throws {
        let producer = try await Daemon(type: "Nginx")
        let consumer = try await Daemon(type: "Nginx")
        defer { producer.stop(); consumer.stop() }
        let consumerPort = try Self.freePort()
        for cycle in 0..<50 {
            let tunnel = try await TunnelTests.setUp(type: "Nginx", appPort: 5001, consumerPort: consumerPort, numConn: 2, producer: producer, consumer: consumer)
            let pids = [tunnel.proxyPID(producer), tunnel.proxyPID(consumer)].compactMap { $0 }
            #expect(pids.count == 2, "cycle \(cycle)")
            await Self.release(tunnel)
            for pid in pids { #expect(!processExists(pid), "cycle \(cycle): proxy \(pid) left") }
        }
        for daemon in [producer, consumer] {
            let files = sessionFolderEntries(daemon.configFolder)
            #expect(files.allSatisfy { $0.hasSuffix(".log") }, "files left: \(files)")
            #expect(childPIDs(of: daemon.pid).isEmpty, "children left: \(childPIDs(of: daemon.pid))")
        }
    }
}

/// The processes whose parent is `pid` (from /proc).
func childPIDs(of pid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { child in
        guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 2 && Int32(fields[1]) == pid
    }
}
