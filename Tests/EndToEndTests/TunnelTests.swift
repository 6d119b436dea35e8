import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import SciStreamControl

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
    static func setUp(type: String, appPort: UInt16, range: (String, String), consumerPort: UInt16, numConn: Int = 1,
                      producer: Daemon? = nil, consumer: Daemon? = nil) async throws -> Tunnel {
        let producer = if let producer { producer } else { try await Daemon(type: type, portRange: range.0) }
        let consumer = if let consumer { consumer } else { try await Daemon(type: type, portRange: range.1) }
        let inbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(appPort)", "--num_conn", "\(numConn)"])
        guard inbound.status == 0, inbound.lines.count == 7 else {
            throw HarnessError("inbound_request failed (\(inbound.status)): \(inbound.stderr)\n\(producer.log)")
        }
        let uid = String(inbound.lines[1].prefix(36))
        let listeners = inbound.lines[6].dropFirst("Listeners: [".count).dropLast()
            .split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "' ")) }
        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(consumerPort)", uid, listeners.joined(separator: ",")])
        guard outbound.status == 0 else {
            throw HarnessError("outbound_request failed (\(outbound.status)): \(outbound.stderr)\n\(consumer.log)")
        }
        #expect(outbound.lines.last == "Listeners: ['127.0.0.1:\(consumerPort)']")
        return Tunnel(producer: producer, consumer: consumer, uid: uid, producerListeners: listeners, consumerPort: consumerPort)
    }

    static func freePort() throws -> UInt16 {
        let socket = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        defer { socket.close() }
        return socket.localAddress?.port ?? 0
    }

    @Test(arguments: types)
    func sixtyFourMiBArriveIntactThenReleaseLeavesNothing(type: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let base = 22000 + 100 * (Self.types.firstIndex(of: type) ?? 0)
        let tunnel = try await Self.setUp(type: type, appPort: app.port, range: ("\(base)-\(base + 9)", "\(base + 10)-\(base + 19)"), consumerPort: try Self.freePort())
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
        let base = 22400 + 100 * (Self.types.firstIndex(of: type) ?? 0)
        let tunnel = try await Self.setUp(type: type, appPort: app.port, range: ("\(base)-\(base + 9)", "\(base + 10)-\(base + 19)"), consumerPort: try Self.freePort())
        defer { tunnel.producer.stop(); tunnel.consumer.stop() }
        let listener = tunnel.producerListeners[0]
        let folder = Harness.temporaryFolder("stranger")
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
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = ["s_client", "-connect", listener, "-quiet", "-no_ign_eof"] + extra
            process.standardInput = try FileHandle(forReadingFrom: payload)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { process.terminate(); process.waitUntilExit() }
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
